//! The `env` imports: every proxy-wasm host call devgate may make.

use wasmtime::Linker;

use crate::codes::{
    status, BUFFER_HTTP_CALL_RESPONSE_BODY, BUFFER_HTTP_REQUEST_BODY, BUFFER_HTTP_RESPONSE_BODY,
    BUFFER_MAX, BUFFER_PLUGIN_CONFIGURATION, BUFFER_VM_CONFIGURATION,
};
use crate::headers::{show, Headers};
use crate::memory::{give, read, write_u32, write_u64, Ctx, WResult};
use crate::records::{LocalResponse, LogLine};
use crate::shared::{HttpCall, Metric};
use crate::state::{map_name, normalize_property_path, property_name, State};

pub(crate) fn define_env(linker: &mut Linker<State>) -> WResult<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_>, lvl: i32, ptr: i32, len: i32| -> WResult<i32> {
            let raw = read(&mut c, ptr, len)?;
            let message = String::from_utf8_lossy(&raw).into_owned();
            let s = c.data_mut();
            s.record("proxy_log", format!("{lvl}, {}", show(&raw, 60)));
            s.logs.push(LogLine {
                level: Some(lvl as u32),
                message,
                raw,
            });
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_>, out: i32| -> WResult<i32> {
            c.data_mut().record("proxy_get_log_level", String::new());
            let level = c.data().log_level;
            write_u32(&mut c, out, level)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, out: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_current_time_nanoseconds", String::new());
            let now = c.data().now_nanos;
            write_u64(&mut c, out, now)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_set_tick_period_milliseconds", format!("{period}"));
            s.tick_period_ms = Some(period as u32);
            Ok(status::OK)
        },
    )?;

    // --- properties ---------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>,
         path_ptr: i32,
         path_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> WResult<i32> {
            let path = normalize_property_path(&read(&mut c, path_ptr, path_len)?);
            let s = c.data_mut();
            s.record("proxy_get_property", property_name(&path));
            let value = if s.in_request {
                s.properties
                    .get(&path)
                    .or_else(|| s.root_properties.get(&path))
            } else {
                s.root_properties.get(&path)
            }
            .cloned();
            match value {
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>,
         path_ptr: i32,
         path_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> WResult<i32> {
            let path = normalize_property_path(&read(&mut c, path_ptr, path_len)?);
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_property",
                format!("{} = {}", property_name(&path), show(&value, 40)),
            );
            if !s.in_request {
                // Envoy: no stream info outside a stream.
                return Ok(status::NOT_FOUND);
            }
            s.properties_set.insert(property_name(&path), value.clone());
            s.properties.insert(path, value);
            Ok(status::OK)
        },
    )?;

    // --- header maps --------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map_type: i32, ret_ptr: i32, ret_len: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_header_map_pairs", map_name(map_type).into());
            // Envoy answers an unavailable map with an empty list.
            let bytes = match c.data().map(map_type) {
                Some(m) if !m.is_empty() => m.serialize(),
                _ => Vec::new(),
            };
            give(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, map_type: i32, ptr: i32, len: i32| -> WResult<i32> {
            let bytes = read(&mut c, ptr, len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_header_map_pairs",
                format!("{}, {} bytes", map_name(map_type), bytes.len()),
            );
            let pairs = match Headers::deserialize(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    s.violation(format!("proxy_set_header_map_pairs: malformed map: {e}"));
                    return Ok(status::SERIALIZATION_FAILURE);
                }
            };
            for (n, v) in pairs.0.clone() {
                s.check_header_write("proxy_set_header_map_pairs", &n, &v);
            }
            match s.map_mut(map_type) {
                Some(m) => {
                    // Envoy removes every existing key, then adds each pair (lowercased).
                    *m = Headers::new();
                    for (n, v) in &pairs.0 {
                        m.add(n, v);
                    }
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            c.data_mut().record(
                "proxy_get_header_map_value",
                format!("{}, {}", map_name(map_type), show(&key, 60)),
            );
            let found = match c.data().map(map_type) {
                None => return Ok(status::BAD_ARGUMENT),
                Some(m) => {
                    let lower = key.to_ascii_lowercase();
                    m.0.iter()
                        .find(|(n, _)| *n == lower)
                        .map(|(_, v)| v.clone())
                }
            };
            match found {
                Some(v) => {
                    give(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Ctx<'_>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_add_header_map_value",
                format!(
                    "{}, {}, {}",
                    map_name(map_type),
                    show(&key, 60),
                    show(&value, 40)
                ),
            );
            s.check_header_write("proxy_add_header_map_value", &key, &value);
            match s.map_mut(map_type) {
                Some(m) => {
                    m.add(&key, &value);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Ctx<'_>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_replace_header_map_value",
                format!(
                    "{}, {}, {}",
                    map_name(map_type),
                    show(&key, 60),
                    show(&value, 40)
                ),
            );
            s.check_header_write("proxy_replace_header_map_value", &key, &value);
            let legacy = s.legacy_replace;
            match s.map_mut(map_type) {
                Some(m) => {
                    if legacy {
                        m.replace_first_only(&key, &value);
                    } else {
                        m.replace(&key, &value);
                    }
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map_type: i32, key_ptr: i32, key_len: i32| -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_remove_header_map_value",
                format!("{}, {}", map_name(map_type), show(&key, 60)),
            );
            match s.map_mut(map_type) {
                Some(m) => {
                    m.remove(&key);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Ctx<'_>, map_type: i32, out: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_header_map_size", map_name(map_type).into());
            let size = match c.data().map(map_type) {
                Some(m) => m.byte_size() as u32,
                None => return Ok(status::BAD_ARGUMENT),
            };
            write_u32(&mut c, out, size)?;
            Ok(status::OK)
        },
    )?;

    // --- buffers ------------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         buffer_type: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> WResult<i32> {
            c.data_mut().record(
                "proxy_get_buffer_bytes",
                format!("{buffer_type}, {start}, {}", max as u32),
            );
            let buffer = match buffer_of(c.data(), buffer_type) {
                Some(b) => b,
                None => return Ok(status::NOT_FOUND),
            };
            let start = (start as u32 as usize).min(buffer.len());
            let end = start.saturating_add(max as u32 as usize).min(buffer.len());
            let slice = buffer.get(start..end).unwrap_or_default().to_vec();
            // An empty range is a NULL pointer and size 0, as in proxy-wasm-cpp-host.
            give(&mut c, &slice, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Ctx<'_>, buffer_type: i32, len_out: i32, flags_out: i32| -> WResult<i32> {
            c.data_mut()
                .record("proxy_get_buffer_status", format!("{buffer_type}"));
            let len = match buffer_of(c.data(), buffer_type) {
                Some(b) => b.len() as u32,
                None => return Ok(status::NOT_FOUND),
            };
            write_u32(&mut c, len_out, len)?;
            write_u32(&mut c, flags_out, 0)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>,
         buffer_type: i32,
         start: i32,
         length: i32,
         data_ptr: i32,
         data_len: i32|
         -> WResult<i32> {
            let data = read(&mut c, data_ptr, data_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_buffer_bytes",
                format!(
                    "{buffer_type}, {}, {}, {} bytes",
                    start as u32,
                    length as u32,
                    data.len()
                ),
            );
            if !(0..=BUFFER_MAX).contains(&buffer_type) {
                return Ok(status::BAD_ARGUMENT);
            }
            let (start, length) = (start as u32 as usize, length as u32 as usize);
            match (buffer_type, s.request_body.as_mut()) {
                // Envoy's `Buffer::copyFrom` on a live body chunk: at 0, drain `length` (as much
                // as there is) and prepend; at or past the end, append; elsewhere, BadArgument.
                (BUFFER_HTTP_REQUEST_BODY, Some(body)) => {
                    if start == 0 {
                        let drained = length.min(body.len());
                        let mut next = data;
                        next.extend_from_slice(&body[drained..]);
                        *body = next;
                        Ok(status::OK)
                    } else if start >= body.len() {
                        body.extend_from_slice(&data);
                        Ok(status::OK)
                    } else {
                        Ok(status::BAD_ARGUMENT)
                    }
                }
                // No body buffer in this callback (Envoy: a string buffer, not settable), and
                // the configuration buffers are read-only.
                _ => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;

    // --- local responses and streams ----------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         status_code: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32|
         -> WResult<i32> {
            let details = read(&mut c, details_ptr, details_len)?;
            let body = read(&mut c, body_ptr, body_len)?;
            let raw_headers = read(&mut c, headers_ptr, headers_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_send_local_response",
                format!(
                    "{status_code}, {}, {} body bytes",
                    show(&details, 40),
                    body.len()
                ),
            );
            let headers = match Headers::deserialize(&raw_headers) {
                Ok(h) => h,
                Err(e) => {
                    s.violation(format!("proxy_send_local_response: malformed headers: {e}"));
                    return Ok(status::SERIALIZATION_FAILURE);
                }
            };
            for (n, v) in headers.0.clone() {
                s.check_header_write("proxy_send_local_response", &n, &v);
            }
            if !(100..=599).contains(&status_code) {
                s.violation(format!("proxy_send_local_response: status {status_code}"));
            }
            if !s.in_request {
                s.violation("proxy_send_local_response outside a request".into());
                return Ok(status::BAD_ARGUMENT);
            }
            if s.current_context != s.stream_context {
                s.violation(format!(
                    "proxy_send_local_response ({status_code}) in context {}, not the stream's {}",
                    s.current_context, s.stream_context
                ));
                return Ok(status::BAD_ARGUMENT);
            }
            if !s.local_responses.is_empty() {
                s.violation(format!(
                    "a second proxy_send_local_response ({status_code}) in one stream, in {:?}",
                    s.phase
                ));
            } else if s.encoding_local_reply {
                s.violation(format!(
                    "proxy_send_local_response ({status_code}) while encoding devgate's own reply"
                ));
            }
            let mut lowered = Headers::new();
            for (n, v) in &headers.0 {
                lowered.add(n, v);
            }
            let phase = s.phase;
            s.local_responses.push(LocalResponse {
                status: status_code as u32,
                details,
                body,
                headers: lowered,
                grpc_status,
                phase,
            });
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Ctx<'_>, stream: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_continue_stream", format!("{stream}"));
            if s.in_request && s.current_context != s.stream_context {
                // Envoy: the root context has no stream to continue; the request stays held.
                s.violation(format!(
                    "proxy_continue_stream({stream}) in context {}, not the stream's {}",
                    s.current_context, s.stream_context
                ));
                return Ok(status::OK);
            }
            match stream {
                0 => s.continued_request += 1,
                1 => s.continued_response += 1,
                _ => return Ok(status::BAD_ARGUMENT),
            }
            Ok(status::OK)
        },
    )?;

    linker.func_wrap("env", "proxy_done", |mut c: Ctx<'_>| -> WResult<i32> {
        let s = c.data_mut();
        s.record("proxy_done", String::new());
        s.proxy_done_calls += 1;
        Ok(status::OK)
    })?;

    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, id: i32| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_set_effective_context", format!("{id}"));
            s.current_context = id as u32;
            Ok(status::OK)
        },
    )?;

    // --- metrics ------------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, name_ptr: i32, name_len: i32, out: i32| -> WResult<i32> {
            let name = String::from_utf8_lossy(&read(&mut c, name_ptr, name_len)?).into_owned();
            let s = c.data_mut();
            s.record("proxy_define_metric", format!("{kind}, {name}"));
            if kind > 2 {
                return Ok(status::BAD_ARGUMENT);
            }
            // Envoy hands back the same id for the same name.
            let id = match s.metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    s.metrics.push(Metric {
                        kind: kind as u32,
                        name,
                        value: 0,
                    });
                    s.metrics.len() - 1
                }
            };
            write_u32(&mut c, out, id as u32 + 1)?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: i32, offset: i64| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_increment_metric", format!("{id}, {offset}"));
            match (id as usize)
                .checked_sub(1)
                .and_then(|i| s.metrics.get_mut(i))
            {
                Some(m) if m.kind == 2 => {
                    s.violation(format!("proxy_increment_metric on histogram {id}"));
                    Ok(status::BAD_ARGUMENT)
                }
                Some(m) => {
                    m.value = m.value.wrapping_add(offset);
                    Ok(status::OK)
                }
                None => {
                    s.violation(format!(
                        "proxy_increment_metric: metric {id} was never defined"
                    ));
                    Ok(status::NOT_FOUND)
                }
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: i32, value: i64| -> WResult<i32> {
            let s = c.data_mut();
            s.record("proxy_record_metric", format!("{id}, {value}"));
            match (id as usize)
                .checked_sub(1)
                .and_then(|i| s.metrics.get_mut(i))
            {
                Some(m) => {
                    m.value = value;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, out: i32| -> WResult<i32> {
            c.data_mut().record("proxy_get_metric", format!("{id}"));
            let value = match (id as usize)
                .checked_sub(1)
                .and_then(|i| c.data().metrics.get(i))
            {
                Some(m) => m.value as u64,
                None => return Ok(status::NOT_FOUND),
            };
            write_u64(&mut c, out, value)?;
            Ok(status::OK)
        },
    )?;

    // --- shared data --------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32,
         cas_out: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            c.data_mut().record("proxy_get_shared_data", show(&key, 60));
            let entry = c.data().shared.module_get(&key);
            match entry {
                Some((value, cas)) => {
                    give(&mut c, &value, ret_ptr, ret_len)?;
                    write_u32(&mut c, cas_out, cas)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32,
         cas: i32|
         -> WResult<i32> {
            let key = read(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, val_ptr, val_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_set_shared_data",
                format!("{}, {} bytes, cas {cas}", show(&key, 60), value.len()),
            );
            Ok(s.shared.module_set(&key, &value, cas as u32))
        },
    )?;

    // --- outbound HTTP ------------------------------------------------------------------------

    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up_ptr: i32,
         up_len: i32,
         h_ptr: i32,
         h_len: i32,
         b_ptr: i32,
         b_len: i32,
         t_ptr: i32,
         t_len: i32,
         timeout: i32,
         token_out: i32|
         -> WResult<i32> {
            let upstream = read(&mut c, up_ptr, up_len)?;
            let raw_headers = read(&mut c, h_ptr, h_len)?;
            let body = read(&mut c, b_ptr, b_len)?;
            let raw_trailers = read(&mut c, t_ptr, t_len)?;
            let s = c.data_mut();
            s.record(
                "proxy_http_call",
                format!(
                    "{}, {} header bytes, {} body bytes, {timeout} ms",
                    show(&upstream, 40),
                    raw_headers.len(),
                    body.len()
                ),
            );
            let (headers, trailers) = match (
                Headers::deserialize(&raw_headers),
                Headers::deserialize(&raw_trailers),
            ) {
                (Ok(h), Ok(t)) => (h, t),
                (Err(e), _) | (_, Err(e)) => {
                    s.violation(format!("proxy_http_call: malformed map: {e}"));
                    return Ok(status::SERIALIZATION_FAILURE);
                }
            };
            if timeout < 0
                || [":path", ":method", ":authority"]
                    .iter()
                    .any(|h| !headers.contains(h))
            {
                // Envoy's checks.
                return Ok(status::BAD_ARGUMENT);
            }
            s.next_http_token += 1;
            let token = s.next_http_token;
            let context_id = s.current_context;
            s.http_calls.push(HttpCall {
                token,
                context_id,
                upstream,
                headers,
                body,
                trailers,
                timeout_ms: timeout as u32,
            });
            write_u32(&mut c, token_out, token)?;
            Ok(status::OK)
        },
    )?;

    Ok(())
}

pub(crate) fn buffer_of(state: &State, buffer_type: i32) -> Option<Vec<u8>> {
    match buffer_type {
        // Envoy hands out the live chunk in a body callback, and an empty buffer elsewhere.
        BUFFER_HTTP_REQUEST_BODY => Some(state.request_body.clone().unwrap_or_default()),
        BUFFER_HTTP_RESPONSE_BODY => Some(Vec::new()),
        BUFFER_VM_CONFIGURATION => Some(state.vm_config.clone()),
        BUFFER_PLUGIN_CONFIGURATION => Some(state.plugin_config.clone()),
        BUFFER_HTTP_CALL_RESPONSE_BODY => state.http_call_response.as_ref().map(|r| r.1.clone()),
        _ => None,
    }
}
