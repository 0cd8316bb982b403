//! The login form's finish step: a function of the policy, the collected body, the clock and
//! the shared store only, so a host may run it (bcrypt) off its worker thread.

use crate::core::budget;
use crate::core::codes::Outcome;
use crate::core::facts::Facts;
use crate::core::login::{self, Attempts};
use crate::core::plan::{Note, Plan};
use crate::core::policy::{LoginPolicy, Policy};
use crate::core::session::{self, Checked, Store};
use crate::core::shared::{self, SharedStore};

use super::{login_answer, read_attempts, PendingLogin};

/// Whether streams under `policy` may hand their host a whole login form to check
/// ([`Collected::Finish`]): a host that runs the check off its worker sets up its pool only then.
pub fn checks_login_forms(policy: &Policy) -> bool {
    policy.login.is_some()
}

/// [`finish_login`] under `policy`'s login mount (a refusal if the policy has none).
pub fn finish_with<H: Facts + SharedStore + ?Sized>(
    policy: &Policy,
    pending: PendingLogin,
    host: &H,
) -> Plan<'static> {
    match &policy.login {
        Some(login) => finish_login(login, pending, host),
        None => Plan::refuse("login_not_configured"),
    }
}

/// The finish step of `POST <mount>/login`, with the whole body: a function of the policy, the
/// collected body, the clock and the shared store only, so a host may run it (bcrypt) off its
/// worker thread.
pub fn finish_login<H: Facts + SharedStore + ?Sized>(
    login: &LoginPolicy,
    pending: PendingLogin,
    host: &H,
) -> Plan<'static> {
    let now_ms = host.now_ms();
    let now = now_ms / 1000;
    let shared = host;
    let key = login::rate_key(pending.peer);
    let Ok((attempts, _)) = read_attempts(shared, &key) else {
        return Plan::refuse("shared_data_unavailable");
    };
    let (outcome, page, store) = match session::finish(login, &pending.body, attempts, now) {
        Checked::Respond(outcome, page, store) => (outcome, page, store),
        // Right before bcrypt: one verify from the process's budget, or 429 without it.
        Checked::Verify(form) => {
            let taken = shared::try_update(shared, budget::KEY, |prev| {
                let prev = prev.and_then(budget::decode);
                budget::take(prev, now_ms, login.verify_budget)
                    .map(|next| budget::encode(next).to_vec())
            });
            match taken {
                Ok(Ok(())) => session::verify(login, &form, pending.peer, pending.tls, now),
                Ok(Err(retry_after)) => session::over_budget(retry_after),
                // A verify that cannot be counted would let the budget go unmetered.
                Err(_) => return Plan::refuse("shared_data_unavailable"),
            }
        }
    };
    match store {
        Store::Nothing => {}
        Store::Failure => {
            // A failure that cannot be counted would let guessing go unmetered.
            let counted = shared::update(shared, &key, |prev| {
                let prev = prev.and_then(Attempts::from_bytes);
                login::record_failure(prev, now, login.failure_window)
                    .to_bytes()
                    .to_vec()
            });
            if counted.is_err() {
                return Plan::refuse("shared_data_unavailable");
            }
        }
        Store::Clear => {
            let _ = shared.set(&key, Attempts::CLEARED, 0);
        }
    }
    let mut plan = login_answer(outcome, page);
    if outcome == Outcome::Succeeded {
        plan.note = Some(Note::LoginSucceeded);
    }
    plan
}
