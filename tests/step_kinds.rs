//! The ready-made step kinds: template, collect, debug, flunk.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::run_error;
use reactor::kinds::{collect, debug, flunk, template, ForcedFailure, TemplateError};
use reactor::{input, result, step, Inputs, Reactor, ValueMap};

#[tokio::test]
async fn template_renders_arguments_and_keeps_whitespace() {
    let reactor = Reactor::builder("t")
        .input("name")
        .input("location")
        .add(
            template("greeting", "Hi {{ name }}, welcome to {{location}}! 🎉\n")
                .argument("name", input("name"))
                .argument("location", input("location")),
        )
        .returns("greeting")
        .build()
        .unwrap();
    let out = reactor
        .run(
            Inputs::new()
                .with("name", "Marty McFly".to_string())
                .with("location", "Hill Valley Mall"),
        )
        .await
        .unwrap();
    assert_eq!(
        out.get::<String>().unwrap(),
        "Hi Marty McFly, welcome to Hill Valley Mall! 🎉\n"
    );
}

#[tokio::test]
async fn the_guides_return_template_renders_a_result() {
    let reactor = Reactor::builder("batch")
        .add(step("process").run_sync(|_, _| Ok(vec![1_u32, 2, 3])))
        .add(
            template("done", "Processing complete: {{ processed }} records")
                .argument("processed", result("process").map(|v: &Vec<u32>| v.len())),
        )
        .returns("done")
        .build()
        .unwrap();
    let out = reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(
        out.get::<String>().unwrap(),
        "Processing complete: 3 records"
    );
}

#[tokio::test]
async fn an_unknown_placeholder_fails_naming_it() {
    let reactor = Reactor::builder("t")
        .add(template("oops", "Hello {{ nobody }}"))
        .returns("oops")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    let e = err
        .find_reason::<TemplateError>()
        .expect("a template error");
    assert_eq!(e.placeholder, "nobody");
    assert!(err.to_string().contains("{{ nobody }}"), "{err}");
}

#[tokio::test]
async fn collect_returns_its_arguments_as_a_map() {
    let reactor = Reactor::builder("c")
        .input("organisation")
        .input("repository")
        .add(
            collect("result")
                .argument("org", input("organisation"))
                .argument("repo", input("repository")),
        )
        .returns("result")
        .build()
        .unwrap();
    let out = reactor
        .run(
            Inputs::new()
                .with("organisation", "ash-project".to_string())
                .with("repository", "reactor".to_string()),
        )
        .await
        .unwrap();
    let map = out.get::<ValueMap>().unwrap();
    assert_eq!(map["org"].get::<String>().unwrap(), "ash-project");
    assert_eq!(map["repo"].get::<String>().unwrap(), "reactor");
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn debug_logs_arguments_and_context() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let reactor = Reactor::builder("d")
        .add(step("squared").run_sync(|_, _| Ok(169_i64)))
        .add(debug("show", tracing::Level::INFO).argument("squared", result("squared")))
        .returns("show")
        .build()
        .unwrap();
    let out = reactor.run(Inputs::new()).run_async(false).await.unwrap();
    assert!(out.is::<()>());
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Debug information for step `show`"), "{log}");
    assert!(log.contains("169"), "{log}");
    assert!(log.contains("run_id"), "{log}");
}

#[tokio::test]
async fn flunk_fails_with_its_message_and_arguments() {
    let reactor = Reactor::builder("f")
        .input("why")
        .add(step("read").run_sync(|_, _| Ok(())))
        .add(
            flunk("fail", "abort: {{ why }}")
                .argument("why", input("why"))
                .wait_for("read"),
        )
        .returns("fail")
        .build()
        .unwrap();
    let err = run_error(
        reactor
            .run(Inputs::new().with("why", "no plutonium".to_string()))
            .await
            .unwrap_err(),
    );
    let failure = err
        .find_reason::<ForcedFailure>()
        .expect("a forced failure");
    assert_eq!(failure.message, "abort: no plutonium");
    assert_eq!(failure.step, "fail");
    assert_eq!(failure.arguments[0].0, "why");
    assert!(err.to_string().contains("abort: no plutonium"));
}
