//! Keys resolved at the key service (`api.service`): the callout the module makes from the
//! stream's context, its answer handed back through the root context (as Envoy delivers it),
//! the request held meanwhile with its body and trailers, and a stream of another worker waiting
//! on the same key's callout (single flight) until a root tick finds the answer cached.

use devgate_wasm_tests as host;

use devgate::core::token::{sign, Key, Secret};
use host::{Action, Headers, Hold, Host, HostResult, Outcome, Phase, SharedData};

use super::{watched, SECRETS};

/// The key service's signing secret (base64url of 32 bytes; a test value).
const KS_SECRET: &str = "a2V5LXNlcnZpY2UtdGVzdC1zZWNyZXQtMDEyMzQ1Njc";
/// The host's default clock (see `HostBuilder`): 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn config() -> String {
    format!(
        r#"{{"protect": ["/_debug/"],
            "api": {{"routes": [{{"prefix": "/v1/maps", "product": "maps"}}],
                     "service": {{"cluster": "key_service", "authority": "key-service",
                                  "timeout_ms": 700,
                                  "keys": [{{"id": "ks1", "secret": "{KS_SECRET}"}}],
                                  "shape": {{"min_length": 20, "max_length": 128,
                                             "public_prefix": "pk-", "private_prefix": "sk-"}}}}}}}}"#
    )
}

fn gate(shared: &SharedData) -> HostResult<Host> {
    let mut h = watched(Host::builder().shared_data(shared))?;
    let ok = h.configure(&config())?;
    assert!(ok, "configuration refused: {:?}", h.logs());
    Ok(h)
}

/// The service's access token for a private key of org-1 / proj-1 on `maps`.
fn access_token() -> String {
    let key = Key {
        id: "ks1".into(),
        secret: Secret::from_b64url(KS_SECRET).unwrap(),
    };
    let claims = format!(
        r#"{{"exp": {}, "kind": "private_key", "organization_id": "org-1", "project_id": "proj-1",
             "products": ["maps"], "write": true, "jti": "key-1"}}"#,
        NOW + 3600
    );
    sign(claims.as_bytes(), &key, b"")
}

fn status(code: &str) -> Headers {
    let mut h = Headers::new();
    h.add(b":status", code.as_bytes());
    h
}

fn ok_answer() -> Hold {
    let mut h = status("200");
    h.add(b"content-type", b"application/jwt");
    Hold::Answer(h, access_token().into_bytes())
}

fn key_request<'h>(h: &'h mut Host, key: &str) -> host::RequestBuilder<'h> {
    h.request()
        .peer("203.0.113.7:4000")
        .get("/v1/maps/tile")
        .header("x-api-key", key)
}

fn assert_resolved(r: &Outcome) {
    r.assert_well_formed();
    assert!(r.forwarded, "{}", r.describe());
    let up = r.upstream_headers().unwrap();
    assert_eq!(
        up.get_str("x-devgate-organization").as_deref(),
        Some("org-1"),
        "{}",
        r.describe()
    );
    assert_eq!(up.get_str("x-devgate-key-id").as_deref(), Some("key-1"));
    assert!(up.get("x-api-key").is_none(), "the key went upstream");
}

#[test]
fn an_unknown_key_is_asked_about_and_the_request_goes_on_with_the_answer() -> HostResult<()> {
    let shared = SharedData::new();
    let mut h = gate(&shared)?;
    let key = "sk-resolved-at-the-service-0001";
    h.watch_secrets(&[key]);
    let r = key_request(&mut h, key)
        .while_held(vec![ok_answer()])
        .send();
    assert_eq!(r.action(), Action::Pause, "{}", r.describe());
    assert!(r.held, "{}", r.describe());
    assert_resolved(&r);
    // The callout: the configured cluster, pseudo-headers first, the key in its header, no body.
    let call = h.http_calls().last().cloned().unwrap();
    assert_eq!(call.upstream, b"key_service");
    assert_eq!(call.timeout_ms, 700);
    assert!(call.body.is_empty());
    let names: Vec<&[u8]> = call.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(&names[..3], &[&b":method"[..], b":path", b":authority"]);
    assert_eq!(
        call.headers.get_str(":path").as_deref(),
        Some("/access_tokens/")
    );
    assert_eq!(
        call.headers.get_str(":authority").as_deref(),
        Some("key-service")
    );
    assert_eq!(call.headers.get_str("x-api-key").as_deref(), Some(key));
    assert!(
        r.calls.iter().any(|c| c.name == "proxy_continue_stream"),
        "{}",
        r.describe()
    );
    assert_eq!(h.metric("devgate.key_service.entries"), Some(1));
    assert_eq!(h.metric("devgate.key_service.callout"), Some(1));

    // The answer is cached for every worker: the next request goes on at once.
    let calls = h.http_calls().len();
    let r = key_request(&mut h, key).send();
    assert_eq!(r.action(), Action::Continue, "{}", r.describe());
    assert_resolved(&r);
    assert_eq!(h.http_calls().len(), calls, "asked again");
    assert!(h.violations().is_empty(), "{:?}", h.violations());
    h.assert_no_secret_in_logs(SECRETS);
    Ok(())
}

#[test]
fn the_body_and_trailers_wait_with_the_request_and_go_on_after() -> HostResult<()> {
    let mut h = gate(&SharedData::new())?;
    let key = "sk-held-with-a-body-and-trailers";
    h.watch_secrets(&[key]);
    let mut trailers = Headers::new();
    trailers.add(b"x-checksum", b"abc");
    trailers.add(b"x-devgate-organization", b"spoofed-org");
    let r = key_request(&mut h, key)
        .body_chunks(vec![b"part one, ".to_vec(), b"part two".to_vec()])
        .trailers(trailers)
        .while_held(vec![ok_answer()])
        .send();
    assert_resolved(&r);
    assert!(
        r.body_calls.iter().all(|b| b.action == Action::Pause),
        "{}",
        r.describe()
    );
    assert_eq!(r.trailers_action, Some(Action::Pause));
    assert_eq!(r.body_passed_on.concat(), b"part one, part two".to_vec());
    let passed = r.trailers_passed_on.clone().unwrap();
    let names: Vec<&[u8]> = passed.iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![&b"x-checksum"[..]], "{}", r.describe());
    Ok(())
}

#[test]
fn what_the_service_answers_decides_the_request() -> HostResult<()> {
    let huge = vec![b'a'; devgate::core::callout::MAX_ANSWER_BODY + 1];
    let cases: Vec<(Hold, u32, &str)> = vec![
        (Hold::Answer(status("401"), Vec::new()), 401, "key_rejected"),
        (
            Hold::Answer(status("403"), Vec::new()),
            403,
            "key_forbidden",
        ),
        (Hold::Fail, 503, "key_service_unavailable"),
        (
            Hold::Answer(status("500"), Vec::new()),
            503,
            "key_service_unavailable",
        ),
        (
            Hold::Answer(status("200"), huge),
            503,
            "key_service_unavailable",
        ),
        (
            Hold::Answer(status("200"), b"not a token".to_vec()),
            503,
            "key_service_unavailable",
        ),
        (
            Hold::Answer(Headers::new(), Vec::new()),
            503,
            "key_service_unavailable",
        ),
        (
            Hold::Answer(status("0"), Vec::new()),
            503,
            "key_service_unavailable",
        ),
    ];
    for (i, (answer, code, reason)) in cases.into_iter().enumerate() {
        // A fresh process each time: a failed callout is remembered (retry_ms) for the key.
        let mut h = gate(&SharedData::new())?;
        let key = format!("sk-answered-by-the-service-{i:04}");
        h.watch_secrets(&[&key]);
        let r = key_request(&mut h, &key).while_held(vec![answer]).send();
        r.assert_well_formed();
        assert_eq!(r.status(), Some(code), "case {i}: {}", r.describe());
        assert_eq!(r.local_phase(), Some(Phase::Held), "{}", r.describe());
        let details = String::from_utf8_lossy(&r.local().unwrap().details).into_owned();
        assert_eq!(details, format!("devgate_{reason}"), "case {i}");
    }
    Ok(())
}

#[test]
fn a_stream_of_another_worker_waits_for_the_callout_in_the_air() -> HostResult<()> {
    let shared = SharedData::new();
    let mut a = gate(&shared)?;
    let mut b = gate(&shared)?;
    let key = "sk-one-callout-for-two-workers";
    a.watch_secrets(&[key]);
    b.watch_secrets(&[key]);
    // Worker A asks the service and keeps its stream open, its answer not in yet.
    let first = key_request(&mut a, key).keep_open().send();
    assert_eq!(first.action(), Action::Pause, "{}", first.describe());
    let token = a.http_calls().last().unwrap().token;
    // Worker B's stream for the same key waits (no second callout), polling on a fast tick;
    // A's answer lands after B's second tick; B's next tick finds it cached and goes on.
    let Hold::Answer(headers, body) = ok_answer() else {
        unreachable!()
    };
    let mut answered = None;
    let r = key_request(&mut b, key)
        .while_held(vec![Hold::Tick(20), Hold::Tick(20), Hold::Tick(20)])
        .on_held(|i| {
            if i == 2 {
                answered = Some(a.respond_http_call(token, headers.clone(), &body));
            }
        })
        .send();
    answered.unwrap()?;
    assert_eq!(r.action(), Action::Pause, "{}", r.describe());
    assert_resolved(&r);
    assert!(
        b.http_calls().is_empty(),
        "B asked too: {:?}",
        b.http_calls()
    );
    assert_eq!(
        b.tick_period_ms(),
        Some(0),
        "B's tick period is not back to none once nobody waits"
    );
    assert!(
        b.calls()
            .iter()
            .any(|c| c.name == "proxy_set_tick_period_milliseconds" && c.args == "20"),
        "B never ticked fast"
    );
    assert!(a.violations().is_empty(), "{:?}", a.violations());
    Ok(())
}

#[test]
fn hostile_answers_never_trap() -> HostResult<()> {
    let answers: Vec<(Headers, Vec<u8>)> = {
        let mut v = Vec::new();
        let mut non_utf8 = Headers::new();
        non_utf8.add(b":status", b"\xff\xfe\x00");
        non_utf8.add(b"retry-after", b"\xff\xff");
        v.push((non_utf8, b"\xff\x00\xfe".to_vec()));
        let mut retry = status("429");
        retry.add(b"retry-after", b"\xc3\x28 999999999999999999999");
        v.push((retry, Vec::new()));
        v.push((status("200"), vec![0u8; 1 << 20]));
        v.push((status("200"), b"{\"access_token\": 12}".to_vec()));
        v.push((status("200"), b"{\"access_token\": \"a.b.c\"}".to_vec()));
        v.push((status("99999"), b"x".to_vec()));
        v.push((status("2000"), Vec::new()));
        let mut dup = status("200");
        dup.add(b":status", b"401");
        v.push((dup, access_token().into_bytes()));
        v
    };
    for (i, (headers, body)) in answers.into_iter().enumerate() {
        let mut h = gate(&SharedData::new())?;
        let key = format!("sk-hostile-answer-number-{i:04}");
        h.watch_secrets(&[&key]);
        let r = key_request(&mut h, &key)
            .while_held(vec![Hold::Answer(headers, body)])
            .send();
        r.assert_well_formed();
        assert!(h.trapped().is_none(), "case {i}: {}", r.describe());
    }
    Ok(())
}

#[test]
fn fast_ticks_for_a_waiter_run_the_revocation_tick_no_more_than_once_a_second() -> HostResult<()> {
    let with_revocation = config().replacen(
        r#"{"protect""#,
        r#"{"revocation": {"cluster": "revocation", "refresh_seconds": 1, "timeout_ms": 500},
            "protect""#,
        1,
    );
    let shared = SharedData::new();
    let mut a = watched(Host::builder().shared_data(&shared))?;
    let mut b = watched(Host::builder().shared_data(&shared))?;
    for h in [&mut a, &mut b] {
        assert!(h.configure(&with_revocation)?, "{:?}", h.logs());
        assert_eq!(h.tick_period_ms(), Some(1000));
    }
    let key = "sk-waiting-beside-the-revocation-list";
    let first = key_request(&mut a, key).keep_open().send();
    assert_eq!(first.action(), Action::Pause, "{}", first.describe());
    let token = a.http_calls().last().unwrap().token;
    let Hold::Answer(headers, body) = ok_answer() else {
        unreachable!()
    };
    // 55 ticks 20 ms apart (1.1 s): the revocation worker's tick runs on the first and once
    // more a second later, not on every fast tick.
    let mut answered = None;
    let r = key_request(&mut b, key)
        .while_held(vec![Hold::Tick(20); 55])
        .on_held(|i| {
            if i == 54 {
                answered = Some(a.respond_http_call(token, headers.clone(), &body));
            }
        })
        .send();
    answered.unwrap()?;
    // Decided when the answer was cached (refused: no revocation list was ever fetched).
    r.assert_well_formed();
    assert!(r.held, "{}", r.describe());
    assert_eq!(r.status(), Some(401), "{}", r.describe());
    let degraded = b
        .metrics()
        .iter()
        .position(|m| m.name == "devgate.revocation.degraded")
        .unwrap()
        + 1;
    let gauge_sets = r
        .calls
        .iter()
        .filter(|c| c.name == "proxy_record_metric" && c.args.starts_with(&format!("{degraded},")))
        .count();
    assert_eq!(gauge_sets, 2, "{}", r.describe());
    assert_eq!(
        b.tick_period_ms(),
        Some(1000),
        "not back to the revocation period"
    );
    Ok(())
}

#[test]
fn a_waiter_whose_flight_ran_out_asks_itself_and_its_answer_comes_through_the_root(
) -> HostResult<()> {
    let shared = SharedData::new();
    let mut a = gate(&shared)?;
    let mut b = gate(&shared)?;
    let key = "sk-the-first-asker-never-heard-back";
    a.watch_secrets(&[key]);
    b.watch_secrets(&[key]);
    let first = key_request(&mut a, key).keep_open().send();
    assert_eq!(first.action(), Action::Pause, "{}", first.describe());
    // A's flight is good for its timeout and a second (1.7 s); B waits past that, then owns
    // the key's next flight: its callout starts in a root tick, so its answer comes to the
    // root context, which hands it to B's stream.
    let mut events = vec![Hold::Tick(20); 90];
    events.push(ok_answer());
    let r = key_request(&mut b, key).while_held(events).send();
    assert_resolved(&r);
    assert_eq!(b.http_calls().len(), 1, "{:?}", b.http_calls());
    let call = b.http_calls()[0].clone();
    assert_eq!(call.headers.get_str("x-api-key").as_deref(), Some(key));
    assert!(
        r.calls
            .iter()
            .any(|c| c.name == "proxy_set_effective_context" && c.args == r.context_id.to_string()),
        "{}",
        r.describe()
    );
    Ok(())
}
