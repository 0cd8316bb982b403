//! Failed logins: counted in shared data per address, rate-limited, held to the verify
//! budget, and shared by two VMs as Envoy's workers share them.

use devgate::core::budget as core_budget;
use devgate::core::login::Attempts;
use devgate_wasm_tests as host;
use host::{status, Host, HostResult, Outcome, Phase, SharedData};

use super::{
    assert_body_withheld, assert_failed, assert_headers_scrubbed, assert_login_local,
    assert_success, attempts, config, loaded, login_post, set_cookie, vm, with_budget, GOOD_FORM,
    NOW, PEER, RATE_KEY, WRONG_FORM,
};

#[test]
fn wrong_password_is_401_and_counted_in_shared_data() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let shared = h.shared_data();
    for n in 1..=3u32 {
        let r = login_post(&mut h, PEER).body(WRONG_FORM.as_bytes()).send();
        assert_headers_scrubbed(&r);
        assert_body_withheld(&r);
        assert_failed(&r);
        assert_eq!(
            attempts(&shared),
            Some(Attempts {
                count: n,
                window_start: NOW
            })
        );
    }
    // The first write found no record (CAS 0); each later one passed the CAS it had read.
    let sets: Vec<(u32, i32)> = shared
        .sets()
        .into_iter()
        .filter(|(k, _, _)| k == RATE_KEY.as_bytes())
        .map(|(_, cas, rc)| (cas, rc))
        .collect();
    assert_eq!(sets.len(), 3, "{sets:?}");
    assert_eq!(sets[0], (0, status::OK));
    assert!(
        sets[1..]
            .iter()
            .all(|&(cas, rc)| cas != 0 && rc == status::OK),
        "{sets:?}"
    );
    assert_eq!(h.metric("devgate.login.failed"), Some(3));
    // Unknown users and broken forms count the same, with the same answer.
    for body in [
        "username=mallory&password=correct+horse",
        "username=alice",
        "password=x",
        "username=%zz&password=x",
        "",
    ] {
        let r = login_post(&mut h, "192.0.2.44:1")
            .body(body.as_bytes())
            .send();
        assert_failed(&r);
    }
    let other = shared
        .value("devgate.login.192.0.2.44")
        .as_deref()
        .and_then(Attempts::from_bytes);
    assert_eq!(other.map(|a| a.count), Some(5));
    assert_eq!(attempts(&shared).map(|a| a.count), Some(3));
    // A success clears the peer's record.
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    assert_eq!(attempts(&shared), None);
    Ok(())
}

#[test]
fn a_post_without_a_body_is_a_failed_attempt() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    // Headers that end the stream: answered from the headers step.
    let r = login_post(&mut h, PEER).send();
    assert_failed(&r);
    assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
    assert!(!r.body_was_read());
    // Headers, then one empty chunk that ends the stream.
    let r = login_post(&mut h, PEER).end_of_stream(false).send();
    assert_failed(&r);
    assert_eq!(r.local_phase(), Some(Phase::RequestBody(0)));
    assert_eq!(attempts(&h.shared_data()).map(|a| a.count), Some(2));
    Ok(())
}

/// Fuel of one wrong-password login: what a bcrypt verify at cost 5 costs, roughly.
fn failure_fuel(h: &mut Host, peer: &str) -> u64 {
    let r = login_post(h, peer).body(WRONG_FORM.as_bytes()).send();
    assert_failed(&r);
    r.fuel
}

#[test]
fn the_sixth_attempt_is_429_without_running_bcrypt() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let mut fuels = Vec::new();
    for _ in 0..5 {
        fuels.push(failure_fuel(&mut h, PEER));
    }
    let bcrypt = *fuels.iter().min().unwrap();
    for body in [WRONG_FORM, GOOD_FORM] {
        let r = login_post(&mut h, PEER).body(body.as_bytes()).send();
        assert_login_local(&r, 429);
        // Refused from the headers: the body is never read (nor handed on).
        assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
        assert!(!r.body_was_read());
        assert!(r.headers_passed_on.is_none());
        let l = r.local().unwrap();
        assert_eq!(l.headers.get_str("retry-after").as_deref(), Some("300"));
        assert!(l.headers.get_str("set-cookie").is_none());
        eprintln!(
            "429: {} fuel; a failed login (bcrypt cost 5): {bcrypt} fuel",
            r.fuel
        );
        assert!(r.fuel * 20 < bcrypt, "429 cost {} vs {bcrypt}", r.fuel);
    }
    assert_eq!(attempts(&h.shared_data()).map(|a| a.count), Some(5));
    assert_eq!(h.metric("devgate.login.rate_limited"), Some(2));
    // Another peer is not limited.
    let r = login_post(&mut h, "198.51.100.7:1")
        .body(GOOD_FORM.as_bytes())
        .send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    // Once the window is over, the right password works again and clears the record.
    h.set_now(NOW + 299);
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    assert_eq!(r.status(), Some(429), "{}", r.describe());
    assert_eq!(
        r.local().unwrap().headers.get_str("retry-after").as_deref(),
        Some("1")
    );
    h.set_now(NOW + 300);
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    assert_eq!(attempts(&h.shared_data()), None);
    Ok(())
}

/// A wrong password from `peer`, the answer's status and fuel.
fn attempt(h: &mut Host, peer: &str) -> (Option<u32>, u64, Outcome) {
    let r = login_post(h, peer).body(WRONG_FORM.as_bytes()).send();
    r.assert_well_formed();
    (r.status(), r.fuel, r)
}

#[test]
fn a_flood_from_many_addresses_stays_within_the_verify_budget() -> HostResult<()> {
    // Regression: the per-address limit does not bound guesses from many addresses, and
    // every wrong password held the worker for one bcrypt verify.
    let mut h = loaded(&with_budget(&config(""), 60, 3))?;
    let peers: Vec<String> = (1..=12).map(|i| format!("198.51.100.{i}:4000")).collect();
    let mut verified = Vec::new();
    let mut refused = Vec::new();
    for peer in &peers {
        let (status, fuel, r) = attempt(&mut h, peer);
        match status {
            Some(401) => verified.push(fuel),
            Some(429) => {
                let l = r.local().unwrap();
                assert_eq!(l.headers.get_str("retry-after").as_deref(), Some("1"));
                assert!(l.headers.get_str("set-cookie").is_none());
                // Refused in the body step (the form was read), without bcrypt.
                assert!(r.body_was_read());
                refused.push(fuel);
            }
            other => panic!("{other:?}\n{}", r.describe()),
        }
    }
    // The burst, then nothing at the same instant, whichever address asks.
    assert_eq!((verified.len(), refused.len()), (3, 9));
    let bcrypt = *verified.iter().min().unwrap();
    let most = *refused.iter().max().unwrap();
    assert!(
        most * 20 < bcrypt,
        "429: {most} fuel; a verify: {bcrypt} fuel"
    );
    eprintln!("over budget: {most} fuel; a verify (bcrypt cost 5): {bcrypt} fuel");
    assert_eq!(h.metric("devgate.login.failed"), Some(3));
    assert_eq!(h.metric("devgate.login.over_budget"), Some(9));
    // The refused addresses were not charged a failure.
    let shared = h.shared_data();
    assert!(shared.value("devgate.login.198.51.100.12").is_none());
    // One a second after that; the right password is held to the same budget.
    h.set_now(NOW + 1);
    assert_eq!(attempt(&mut h, "198.51.100.20:1").0, Some(401));
    assert_eq!(attempt(&mut h, "198.51.100.21:1").0, Some(429));
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    assert_login_local(&r, 429);
    h.set_now(NOW + 2);
    let r = login_post(&mut h, PEER).body(GOOD_FORM.as_bytes()).send();
    let token = assert_success(&r);
    h.watch_secrets(&[&token]);
    assert!(shared.value(core_budget::KEY).is_some());
    Ok(())
}

#[test]
fn the_verify_budget_is_shared_by_the_workers() -> HostResult<()> {
    let shared = SharedData::new();
    let cfg = with_budget(&config(r#", "network": {"allow": []}"#), 1, 4);
    let mut w0 = vm(Host::builder().shared_data(&shared), &cfg)?;
    let mut w1 = vm(Host::builder().shared_data(&shared), &cfg)?;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let w = if i % 2 == 0 { &mut w0 } else { &mut w1 };
        statuses.push(attempt(w, &format!("192.0.2.{}:1", 10 + i)).0);
    }
    assert_eq!(
        statuses,
        [[Some(401)].repeat(4), [Some(429)].repeat(4)].concat()
    );
    // Another worker's CAS write between the read and the write is retried, never lost; a
    // budget that cannot be written refuses the attempt (fail closed) without bcrypt.
    w0.set_now(NOW + 3600);
    w1.set_now(NOW + 3600);
    let now_ms = (NOW + 3600) * 1000;
    shared.interfere(core_budget::KEY, &core_budget::encode(now_ms + 60_000), 1);
    assert_eq!(attempt(&mut w0, "192.0.2.30:1").0, Some(401));
    // The interfering worker's take plus this one: two of the four.
    let state = shared
        .value(core_budget::KEY)
        .and_then(|v| core_budget::decode(&v));
    assert_eq!(state, Some(now_ms + 120_000));
    shared.interfere(core_budget::KEY, &core_budget::encode(now_ms), 100);
    let (status, _, r) = attempt(&mut w1, "192.0.2.31:1");
    assert!(matches!(status, Some(500 | 503)), "{}", r.describe());
    assert!(set_cookie(&r).is_none());
    Ok(())
}

#[test]
fn failures_are_counted_across_workers() -> HostResult<()> {
    let shared = SharedData::new();
    let mut a = vm(Host::builder().shared_data(&shared), &config(""))?;
    let mut b = vm(Host::builder().shared_data(&shared), &config(""))?;
    for _ in 0..3 {
        failure_fuel(&mut a, PEER);
    }
    failure_fuel(&mut b, PEER);
    assert_eq!(attempts(&shared).map(|x| x.count), Some(4));
    // Worker A reads 4 failures at the headers (under the limit) and goes on to the body;
    // meanwhile worker B counts the fifth. A's body step reads the record again: 429, and no
    // bcrypt for the password it was sent.
    let r = login_post(&mut a, PEER)
        .body_in_chunks_of(GOOD_FORM.as_bytes(), 10)
        .before_chunk(|i| {
            if i == 2 {
                failure_fuel(&mut b, PEER);
            }
        })
        .send();
    assert_headers_scrubbed(&r);
    assert_body_withheld(&r);
    assert_login_local(&r, 429);
    assert_eq!(
        r.local_phase(),
        Some(Phase::RequestBody(r.body_calls.len() - 1))
    );
    assert!(set_cookie(&r).is_none());
    assert!(r.fuel_request_body < 2_000_000, "{}", r.fuel_request_body);
    assert_eq!(attempts(&shared).map(|x| x.count), Some(5));
    // Both workers now refuse from the headers.
    for h in [&mut a, &mut b] {
        let r = login_post(h, PEER).body(GOOD_FORM.as_bytes()).send();
        assert_login_local(&r, 429);
        assert_eq!(r.local_phase(), Some(Phase::RequestHeaders));
    }
    Ok(())
}

#[test]
fn a_cas_conflict_is_retried_and_no_failure_is_lost() -> HostResult<()> {
    let mut h = loaded(&config(""))?;
    let shared = h.shared_data();
    failure_fuel(&mut h, PEER);
    // Between the module's read and its write, another worker stores 3 failures.
    let other = Attempts {
        count: 3,
        window_start: NOW,
    };
    shared.interfere(RATE_KEY, &other.to_bytes(), 1);
    failure_fuel(&mut h, PEER);
    assert_eq!(
        attempts(&shared),
        Some(Attempts {
            count: 4,
            window_start: NOW
        })
    );
    // The failure record's writes (the verify budget's, under its own key, are left out).
    let results: Vec<i32> = shared
        .sets()
        .iter()
        .filter(|s| s.0 == RATE_KEY.as_bytes())
        .map(|s| s.2)
        .collect();
    assert_eq!(
        results,
        vec![status::OK, status::CAS_MISMATCH, status::OK],
        "{:?}",
        shared.sets()
    );
    // A record that cannot be written (every CAS lost) is not a silent pass: devgate refuses
    // the attempt rather than let it go uncounted.
    shared.interfere(RATE_KEY, &other.to_bytes(), 100);
    let r = login_post(&mut h, PEER).body(WRONG_FORM.as_bytes()).send();
    r.assert_well_formed();
    assert!(matches!(r.status(), Some(500 | 503)), "{}", r.describe());
    assert!(set_cookie(&r).is_none());
    eprintln!(
        "CAS lost {} times: {:?}",
        shared
            .sets()
            .iter()
            .filter(|s| s.2 == status::CAS_MISMATCH)
            .count(),
        r.status()
    );
    Ok(())
}
