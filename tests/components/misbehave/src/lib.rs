//! A test-only component for the `wharf:registry/registry` world: Wharf's
//! protocol (the real core, bound by the real capability code of
//! `guest/component`), plus routes under `/v2/__misbehave/` that misbehave
//! on purpose, to prove the sandbox holds:
//!
//! - `hello`: answers 200 `misbehave` (tells this component from the real one);
//! - `trap`: panics (a trap);
//! - `loop`: spins forever;
//! - `oom`: allocates without bound;
//! - `trap-after-head`: sends a response head, then traps mid-body;
//! - `sleep`: answers 200 `slept` after five seconds (a request in flight);
//! - `escalate?a=&b=&blob=&manifest=&tag=&session=`: never asks what the
//!   caller may do, and tries everything: opens `a` and `b` for every
//!   access and the catalog, then with `a` opened for pull only, pushes,
//!   deletes, reads `b`'s blob, manifest and referrers through it, mounts
//!   `b`'s blob and reopens `b`'s upload session. Answers one line per
//!   attempt, `<attempt> <outcome>`, where the outcome is `granted` only
//!   when the host let it through.
#![cfg(target_arch = "wasm32")]

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "wharf:registry/registry",
        generate_all,
    });
}

// The real component's capability bindings, stream helpers and HTTP
// translation, shared as
// source so this component serves the real protocol.
#[path = "../../../../guest/component/src/capabilities.rs"]
mod capabilities;
#[path = "../../../../guest/component/src/http.rs"]
mod http;
#[path = "../../../../guest/component/src/streams.rs"]
mod streams;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use http::{send, translate_request};
use wharf_guest::{Body, Response};

struct Component;

bindings::export!(Component with_types_in bindings);

impl Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if let Some(what) = path.strip_prefix("/v2/__misbehave/") {
            misbehave(what, out);
            return;
        }
        let request = translate_request(request);
        send(
            wharf_guest::handle(&capabilities::HostRegistry, request),
            out,
        );
    }
}

fn misbehave(what: &str, out: ResponseOutparam) {
    match what {
        "hello" => send_text(out, 200, b"misbehave"),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(5));
            send_text(out, 200, b"slept");
        }
        "trap" => panic!("misbehave: trapping on request"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                hoard.push(std::hint::black_box(chunk));
            }
        }
        what if what.starts_with("escalate?") => {
            let report = escalate::attempt(&what["escalate?".len()..]);
            send_text(out, 200, report.as_bytes());
        }
        "trap-after-head" => {
            let headers = Fields::new();
            let _ = headers.append("content-length", b"1000");
            let response = OutgoingResponse::new(headers);
            let body = response.body().expect("a new response has a body");
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().expect("a new body has a stream");
            let _ = stream.blocking_write_and_flush(b"partial");
            panic!("misbehave: trapping after the response head");
        }
        _ => send_text(out, 404, b"no such misbehaviour"),
    }
}

mod escalate {
    //! Calls the host's capabilities directly, as a hostile component would.

    use crate::bindings::wharf::registry::repositories::{Catalog, Manifest, Reference, Repository};
    use crate::bindings::wharf::registry::types::{Access, Algorithm, StoreError, Refusal};
    use std::fmt::Write as _;

    fn param<'a>(query: &'a str, name: &str) -> &'a str {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
    }

    fn opened<T>(r: &Result<T, Refusal>) -> String {
        match r {
            Ok(_) => "granted".into(),
            Err(Refusal::Challenge(_)) => "challenged".into(),
            Err(Refusal::Deny(_)) => "refused".into(),
            Err(Refusal::Invalid(_)) => "invalid".into(),
        }
    }

    /// `granted` only for an answer that gave something: a value, true, Some.
    fn called<T>(r: Result<T, StoreError>, gave: impl FnOnce(&T) -> bool) -> String {
        match r {
            Ok(v) if gave(&v) => "granted".into(),
            Ok(_) => "nothing".into(),
            Err(StoreError::Denied(_)) => "denied".into(),
            Err(StoreError::NotFound) => "not-found".into(),
            Err(e) => format!("error:{e:?}").replace(' ', "_"),
        }
    }

    pub fn attempt(query: &str) -> String {
        let (a, b) = (param(query, "a"), param(query, "b"));
        let (blob, manifest) = (param(query, "blob"), param(query, "manifest"));
        let (tag, session) = (param(query, "tag"), param(query, "session"));
        let mut report = String::new();
        let mut line = |what: &str, outcome: String| {
            let _ = writeln!(report, "{what} {outcome}");
        };
        for (name, repo) in [("a", a), ("b", b)] {
            for (right, access) in [
                ("pull", Access::PULL),
                ("push", Access::PUSH),
                ("delete", Access::DELETE),
            ] {
                line(
                    &format!("open-{name}-{right}"),
                    opened(&Repository::open(repo, access)),
                );
            }
        }
        line("open-catalog", opened(&Catalog::open()));
        line("open-traversal", opened(&Repository::open("../b", Access::PULL)));
        let Ok(pull_a) = Repository::open(a, Access::PULL) else {
            return report;
        };
        let body = b"{}".to_vec();
        let evil = Manifest {
            digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
                .into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: body,
            subject: None,
        };
        line(
            "push-manifest",
            called(pull_a.put_manifest(&evil, &["evil".into()]), |_| true),
        );
        line(
            "start-upload",
            called(pull_a.start_upload(Algorithm::Sha256), |_| true),
        );
        line("open-b-session", called(pull_a.open_upload(session), |_| true));
        line("mount-b-blob", called(pull_a.mount_blob(blob, None), |m| *m));
        line(
            "mount-b-blob-from-self",
            called(pull_a.mount_blob(blob, Some(&pull_a)), |m| *m),
        );
        line("stat-b-blob", called(pull_a.stat_blob(blob), Option::is_some));
        line(
            "read-b-blob",
            called(pull_a.read_blob(blob, None), Option::is_some),
        );
        line(
            "b-manifest-by-digest",
            called(pull_a.manifest(&Reference::Digest(manifest.into())), Option::is_some),
        );
        line(
            "b-manifest-by-tag",
            called(pull_a.manifest(&Reference::Tag(tag.into())), Option::is_some),
        );
        line(
            "b-referrers",
            called(pull_a.list_referrers(manifest, None, 100), |p| {
                !p.entries.is_empty()
            }),
        );
        line(
            "delete-manifest",
            called(pull_a.delete_manifest(manifest), |d| *d),
        );
        line("delete-tag", called(pull_a.delete_tag(tag), |d| *d));
        line("unlink-blob", called(pull_a.unlink_blob(blob), |d| *d));
        report
    }
}

fn send_text(out: ResponseOutparam, status: u16, text: &[u8]) {
    send(
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Body::Bytes(text.to_vec()),
        },
        out,
    );
}
