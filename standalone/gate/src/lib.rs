//! The standalone registry's gate: authentication, and everything the
//! protocol core may see of the outside under a stock host.
//!
//! A stock wasi-http host hands the whole request, `Authorization` header
//! included, to the component it runs. The gate receives it first
//! (`admission.admit`, called by the entry), checks the credentials
//! ([`credentials`]), answers a wrong password itself with registry:2's 401,
//! and otherwise hands back [`view`]: the same request without the header,
//! through its own implementation of the part of `wasi:http/types` the core
//! imports. The caller's identity stays here; storage asks for decisions
//! through `access.authorize`, as the native host's repositories do. The
//! core's environment is the gate's too: empty.

pub mod credentials;
#[cfg(target_arch = "wasm32")]
mod view;

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wharf:registry/gate",
        generate_all,
    });
}

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::bindings;
    use crate::credentials::{Auth, Identity, Refused, Verified};
    use crate::view;
    use bindings::exports::wharf::registry::types::{Access, Refusal};
    use bindings::exports::wharf::registry::{access, admission, http_types};
    use bindings::wasi::http::types as host;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// What this instance knows: the configuration it read, credentials it
    /// verified, and who sent the request being served.
    struct State {
        auth: Auth,
        verified: Verified,
        caller: Identity,
    }

    thread_local! {
        static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    }

    fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
        STATE.with(|state| {
            let mut state = state.borrow_mut();
            let state = state.get_or_insert_with(|| State {
                auth: Auth::from_vars(&std::env::vars().collect::<HashMap<_, _>>(), |path| {
                    std::fs::read_to_string(path)
                }),
                verified: Verified::default(),
                caller: Identity::Anonymous,
            });
            f(state)
        })
    }

    pub struct Gate;

    bindings::export!(Gate with_types_in bindings);

    impl admission::Guest for Gate {
        fn admit(
            request: host::IncomingRequest,
            out: host::ResponseOutparam,
        ) -> Option<(http_types::IncomingRequest, http_types::ResponseOutparam)> {
            let headers = request.headers().entries();
            let authorization = headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
            let identified = with_state(|state| {
                let identified = state
                    .auth
                    .identify(authorization.as_deref(), &mut state.verified);
                state.caller = identified.clone().unwrap_or(Identity::Anonymous);
                identified
            });
            match identified {
                Ok(_) => Some(view::admitted(request, headers, out)),
                Err(refused) => {
                    let error = match refused {
                        Refused::Challenge(challenge) => {
                            wharf_guest::errors::Error::challenge(&challenge)
                        }
                        Refused::Broken(text) => {
                            eprintln!("wharf gate: {text}");
                            wharf_guest::errors::Error::new(wharf_spec::Code::Unknown)
                                .status(500)
                                .message(text)
                        }
                    };
                    view::answer(out, error.into_response::<()>());
                    None
                }
            }
        }
    }

    impl access::Guest for Gate {
        /// Every authenticated user may do everything, as with registry:2;
        /// anyone else is asked to log in when credentials are required.
        fn authorize(_name: Option<String>, _access: Access) -> Result<(), Refusal> {
            with_state(|state| match (&state.caller, state.auth.challenge()) {
                (Identity::Anonymous, Some(challenge)) => {
                    Err(Refusal::Challenge(challenge.to_string()))
                }
                _ => Ok(()),
            })
        }
    }

    impl bindings::exports::wasi::cli::environment::Guest for Gate {
        fn get_environment() -> Vec<(String, String)> {
            Vec::new()
        }

        fn get_arguments() -> Vec<String> {
            Vec::new()
        }

        fn initial_cwd() -> Option<String> {
            None
        }
    }
}
