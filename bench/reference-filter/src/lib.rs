//! A proxy-wasm HTTP filter that makes the host calls its configuration lists, in order, on every
//! request, and nothing else: a price list for Envoy's host calls and a stand-in for simple
//! filters (see bench/README.md). Benchmark code, not a product: it never refuses a request.
//!
//! The configuration is a whitespace-separated list of steps:
//!
//! | step | host call |
//! |---|---|
//! | `pairs` | read every request header (`proxy_get_header_map_pairs`) |
//! | `peer` | read the `source.address` property |
//! | `header:NAME` | read one request header |
//! | `set:NAME=VALUE` | set a request header (replacing any) |
//! | `remove:NAME` | remove a request header |
//! | `property:NAME=VALUE` | set a property (filter state) |
//! | `metric` | increment a counter |
//! | `time` | read the clock |
//! | `response_header:NAME` | read one response header, in the response |
//!
//! An unknown step refuses the configuration. No configuration: no step (an empty filter with a
//! configuration reader).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { steps: Rc::new(Steps::default()) })
    });
}}

enum Step {
    Pairs,
    Peer,
    Header(String),
    Set(String, String),
    Remove(String),
    Property(String, String),
    Metric(u32),
    Time,
}

#[derive(Default)]
struct Steps {
    request: Vec<Step>,
    response: Vec<String>,
}

fn parse(config: &str) -> Option<Steps> {
    let mut steps = Steps::default();
    for word in config.split_whitespace() {
        let (op, arg) = word.split_once(':').unwrap_or((word, ""));
        let kv = || arg.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()));
        let step = match op {
            "pairs" => Step::Pairs,
            "peer" => Step::Peer,
            "time" => Step::Time,
            "metric" => Step::Metric(
                hostcalls::define_metric(MetricType::Counter, "bench_reference.count").ok()?,
            ),
            "header" if !arg.is_empty() => Step::Header(arg.to_owned()),
            "remove" if !arg.is_empty() => Step::Remove(arg.to_owned()),
            "set" => kv().map(|(k, v)| Step::Set(k, v))?,
            "property" => kv().map(|(k, v)| Step::Property(k, v))?,
            "response_header" if !arg.is_empty() => {
                steps.response.push(arg.to_owned());
                continue;
            }
            _ => return None,
        };
        steps.request.push(step);
    }
    Some(steps)
}

struct Root {
    steps: Rc<Steps>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match std::str::from_utf8(&config).ok().and_then(parse) {
            Some(steps) => {
                self.steps = Rc::new(steps);
                true
            }
            None => {
                let _ = hostcalls::log(LogLevel::Error, "reference filter: bad configuration");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Reference {
            steps: Rc::clone(&self.steps),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Reference {
    steps: Rc<Steps>,
}

impl Context for Reference {}

impl HttpContext for Reference {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        // Results are dropped: only the calls are measured. Errors are ignored the same way.
        for step in &self.steps.request {
            let _ = match step {
                Step::Pairs => hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map(drop),
                Step::Peer => hostcalls::get_property(vec!["source", "address"]).map(drop),
                Step::Header(name) => {
                    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).map(drop)
                }
                Step::Set(name, value) => hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    Some(value.as_bytes()),
                ),
                Step::Remove(name) => {
                    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None)
                }
                Step::Property(name, value) => {
                    hostcalls::set_property(vec![name.as_str()], Some(value.as_bytes()))
                }
                Step::Metric(id) => hostcalls::increment_metric(*id, 1),
                Step::Time => hostcalls::get_current_time().map(drop),
            };
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        for name in &self.steps.response {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name);
        }
        Action::Continue
    }
}
