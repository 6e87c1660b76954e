//! Bodies posted to the webhook and the OpenAI-compatible endpoint, through the real router of
//! `spacebot-webhook` over a real runtime, in process (`tower::ServiceExt::oneshot`).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tower::ServiceExt;

use spacebot_core::{
    ConversationContext, ConversationEngine, ConversationInput, Inbox, OutboundResponse, Runtime, RuntimeEvent,
    TurnOutcome, Usage,
};
use spacebot_testing::MemoryLog;
use spacebot_webhook::{ApiConfig, OpenAiAdapter, WebhookAdapter};

/// How long a chat completion waits for the agent: short, so a silent agent costs little.
const REPLY_TIMEOUT: Duration = Duration::from_millis(2);

/// The routes every body is posted to.
const PATHS: [&str; 2] = ["/webhook/main", "/v1/chat/completions"];

/// Takes every message and never answers.
struct SilentEngine;

impl ConversationEngine for SilentEngine {
    fn run_conversation(&self, _ctx: ConversationContext, mut inbox: Inbox) -> BoxFuture<'static, ()> {
        Box::pin(async move { while inbox.recv().await.is_some() {} })
    }
}

/// Answers every message at once and ends the turn as the channel does; answers a control
/// command with one line.
struct InstantEngine;

impl ConversationEngine for InstantEngine {
    fn run_conversation(&self, ctx: ConversationContext, mut inbox: Inbox) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            while let Some(input) = inbox.recv().await {
                match input {
                    ConversationInput::Message(message) => {
                        let reply = format!("echo: {}", message.content.text());
                        // A delivery that fails is the HTTP side's business, which is under test.
                        let _ = ctx.outbox.send(&message, OutboundResponse::text(reply)).await;
                        ctx.outbox.publish(RuntimeEvent::TurnFinished {
                            agent: ctx.agent.clone(),
                            conversation: ctx.conversation.clone(),
                            outcome: TurnOutcome::Replied,
                            message: Some(message.id.clone()),
                            usage: Usage::new(10, 2),
                        });
                    }
                    ConversationInput::Control(command, message) => {
                        let _ = ctx.outbox.send(&message, OutboundResponse::text(format!("did {command:?}"))).await;
                    }
                    _ => {}
                }
            }
        })
    }
}

/// Inputs served before the runtimes start over: their in-memory logs keep every message, which
/// over millions of inputs would grow past libFuzzer's memory limit.
const INPUTS_PER_START: u32 = 20_000;

/// The routers over a silent and an instant agent, and what they run on.
struct Served {
    tokio: tokio::runtime::Runtime,
    routers: Vec<Router>,
    /// The runtimes behind the routers.
    runtimes: Vec<Runtime>,
    /// Inputs served so far.
    served: u32,
}

impl Served {
    fn start() -> Self {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let engines: [Arc<dyn ConversationEngine>; 2] = [Arc::new(SilentEngine), Arc::new(InstantEngine)];
        let mut routers = Vec::new();
        let mut runtimes = Vec::new();
        for engine in engines {
            let openai = OpenAiAdapter::new();
            let runtime = tokio.block_on(
                Runtime::builder()
                    .engine(engine)
                    .log(Arc::new(MemoryLog::new()))
                    .adapter(Arc::new(WebhookAdapter))
                    .adapter(Arc::new(openai.clone()))
                    .agent("main")
                    .start(),
            );
            let runtime = runtime.expect("the runtime starts");
            let api = ApiConfig::default().with_openai(openai).with_reply_timeout(REPLY_TIMEOUT);
            routers.push(spacebot_webhook::router(runtime.handle(), api));
            runtimes.push(runtime);
        }
        Self { tokio, routers, runtimes, served: 0 }
    }

    /// Shuts the runtimes down (their conversation tasks end) and drops everything.
    fn stop(self) {
        for runtime in self.runtimes {
            self.tokio.block_on(runtime.shutdown());
        }
    }
}

thread_local! {
    /// Started on the first input and every [`INPUTS_PER_START`] inputs: libFuzzer runs every
    /// input on one thread.
    static SERVED: RefCell<Option<Served>> = const { RefCell::new(None) };
}

/// Posts `data` as the body to the webhook and to the chat completions endpoint, over an agent
/// that never answers and one that answers at once: every answer is below 500 (or the 504 of a
/// completion the agent did not answer in time) and is JSON or an event stream.
pub fn check_http_bodies(data: &[u8]) {
    SERVED.with(|served| {
        let mut served = served.borrow_mut();
        if served.as_ref().is_some_and(|served| served.served >= INPUTS_PER_START)
            && let Some(old) = served.take()
        {
            old.stop();
        }
        let served = served.get_or_insert_with(Served::start);
        served.served += 1;
        for router in &served.routers {
            for path in PATHS {
                let request = Request::post(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(data.to_vec()))
                    .expect("a well-formed request");
                let (status, stream, body) = served.tokio.block_on(async {
                    let response = router.clone().oneshot(request).await.expect("the router is infallible");
                    let status = response.status();
                    let stream = response
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|value| value.to_str().ok())
                        .is_some_and(|value| value.starts_with("text/event-stream"));
                    let body = response.into_body().collect().await.map(|body| body.to_bytes());
                    (status, stream, body)
                });
                let body = body.unwrap_or_else(|error| panic!("{path} answered {status} with a broken body: {error}"));
                assert!(
                    status.as_u16() < 500 || status == StatusCode::GATEWAY_TIMEOUT,
                    "{path} answered {status} to {:?}: {}",
                    String::from_utf8_lossy(data),
                    String::from_utf8_lossy(&body)
                );
                assert!(
                    stream || serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                    "{path} answered {status} with no JSON: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    });
}
