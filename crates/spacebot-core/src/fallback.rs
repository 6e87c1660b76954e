//! A fallback chain: one [`LanguageModel`] made of several, tried in order.
//!
//! Each model in the chain retries its own transient failures (it knows its provider's limits);
//! the chain only moves on when a model has given up. It moves on for failures another model may
//! not have (rate limits, server errors, timeouts, unreachable providers, unreadable answers, a
//! model that is not configured) and stops at once for failures that would repeat anywhere
//! (rejected credentials are the operator's to fix, an invalid request is the harness's).
//!
//! A model that was rate-limited is skipped for its cooldown (the provider's `Retry-After`, else
//! [`FallbackModel::with_cooldown`]) while another model can answer, so a busy provider does not
//! cost every request a failed attempt first. When every model is cooling down, the chain tries
//! them anyway, in order: an answer late is better than none.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::{LlmError, LlmErrorKind};
use crate::llm::{ChatRequest, ChatResponse, ChatStream, LanguageModel};

/// How long a rate-limited model is skipped when the provider did not say.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);

/// Several models tried in order; see the module documentation.
pub struct FallbackModel {
    name: String,
    models: Vec<Arc<dyn LanguageModel>>,
    /// Per model, until when it is skipped after a rate limit.
    cooldowns: Mutex<Vec<Option<Instant>>>,
    cooldown: Duration,
}

impl FallbackModel {
    /// A chain that tries `primary`, then each of `fallbacks` in order.
    pub fn new(primary: Arc<dyn LanguageModel>, fallbacks: impl IntoIterator<Item = Arc<dyn LanguageModel>>) -> Self {
        let models: Vec<Arc<dyn LanguageModel>> = std::iter::once(primary).chain(fallbacks).collect();
        let names: Vec<&str> = models.iter().map(|model| model.name()).collect();
        let name = names.join(" → ");
        let cooldowns = Mutex::new(vec![None; models.len()]);
        Self { name, models, cooldowns, cooldown: DEFAULT_COOLDOWN }
    }

    /// Sets how long a rate-limited model is skipped when the provider gave no `Retry-After`.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The models of the chain, primary first.
    pub fn models(&self) -> &[Arc<dyn LanguageModel>] {
        &self.models
    }

    /// The order to try the models in now: those not cooling down, in chain order; when all
    /// are, every model, in chain order.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let cooldowns = self.cooldowns.lock().unwrap_or_else(PoisonError::into_inner);
        let ready: Vec<usize> = (0..self.models.len())
            .filter(|&i| cooldowns.get(i).copied().flatten().is_none_or(|until| until <= now))
            .collect();
        if ready.is_empty() { (0..self.models.len()).collect() } else { ready }
    }

    /// Notes the outcome of one attempt on model `index`.
    fn note(&self, index: usize, error: Option<&LlmError>) {
        let mut cooldowns = self.cooldowns.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = cooldowns.get_mut(index) else { return };
        *slot = match error {
            Some(error) if error.kind() == LlmErrorKind::RateLimited => {
                Some(Instant::now() + error.retry_after().unwrap_or(self.cooldown))
            }
            Some(_) => *slot,
            None => None,
        };
    }

    /// Runs `attempt` on each model in turn until one succeeds or fails for good.
    async fn run<T, F>(&self, attempt: F) -> Result<T, LlmError>
    where
        F: for<'a> Fn(&'a Arc<dyn LanguageModel>) -> futures::future::BoxFuture<'a, Result<T, LlmError>>,
    {
        let order = self.order();
        let mut last_error = None;
        for (position, index) in order.iter().copied().enumerate() {
            let Some(model) = self.models.get(index) else { continue };
            match attempt(model).await {
                Ok(value) => {
                    self.note(index, None);
                    return Ok(value);
                }
                Err(error) => {
                    self.note(index, Some(&error));
                    if !falls_back(error.kind()) {
                        return Err(error);
                    }
                    if let Some(next) = order.get(position + 1).and_then(|&next| self.models.get(next)) {
                        tracing::warn!(model = model.name(), next = next.name(), %error, "model failed; trying the next in the chain");
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| LlmError::new(LlmErrorKind::NotConfigured, "the fallback chain is empty")))
    }
}

/// Whether a failure of one model is worth trying the next for.
fn falls_back(kind: LlmErrorKind) -> bool {
    kind.is_transient()
        || matches!(kind, LlmErrorKind::InvalidResponse | LlmErrorKind::NotConfigured | LlmErrorKind::Untrusted)
}

impl std::fmt::Debug for FallbackModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackModel").field("name", &self.name).finish()
    }
}

#[async_trait]
impl LanguageModel for FallbackModel {
    /// The models' names joined with arrows, primary first.
    fn name(&self) -> &str {
        &self.name
    }

    /// The smallest window of the chain, so the context fits whichever model answers.
    fn context_window(&self) -> usize {
        self.models.iter().map(|model| model.context_window()).min().unwrap_or(128_000)
    }

    /// Whether any model of the chain calls tools (whichever answers, its text may be followed
    /// by tool calls).
    fn calls_tools(&self) -> bool {
        self.models.iter().any(|model| model.calls_tools())
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.run(|model| {
            let request = request.clone();
            Box::pin(async move { model.complete(request).await })
        })
        .await
    }

    /// Falls back only while opening the stream; an error in the middle of a stream is returned
    /// as it is (part of the answer may already have been shown).
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        self.run(|model| {
            let request = request.clone();
            Box::pin(async move { model.stream(request).await })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::llm::ChatMessage;

    /// A model answering from a list of outcomes: `Ok(text)` or `Err(kind)`.
    struct Listed {
        name: String,
        window: usize,
        outcomes: Mutex<VecDeque<Result<&'static str, LlmErrorKind>>>,
        calls: Mutex<usize>,
    }

    impl Listed {
        fn new(name: &str, outcomes: Vec<Result<&'static str, LlmErrorKind>>) -> Arc<Self> {
            Arc::new(Self {
                name: name.to_owned(),
                window: 1000,
                outcomes: Mutex::new(outcomes.into()),
                calls: Mutex::new(0),
            })
        }

        fn calls(&self) -> usize {
            *self.calls.lock().unwrap()
        }
    }

    #[async_trait]
    impl LanguageModel for Listed {
        fn name(&self) -> &str {
            &self.name
        }

        fn context_window(&self) -> usize {
            self.window
        }

        async fn complete(&self, _request: ChatRequest) -> Result<ChatResponse, LlmError> {
            *self.calls.lock().unwrap() += 1;
            match self.outcomes.lock().unwrap().pop_front() {
                Some(Ok(text)) => Ok(ChatResponse::text(text)),
                Some(Err(kind)) => Err(LlmError::new(kind, format!("{} failed", self.name))),
                None => Err(LlmError::new(LlmErrorKind::InvalidResponse, "no outcome left")),
            }
        }
    }

    fn request() -> ChatRequest {
        ChatRequest::new("system", vec![ChatMessage::user("hi")])
    }

    fn chain(models: &[&Arc<Listed>]) -> FallbackModel {
        let mut models = models.iter().map(|m| (*m).clone() as Arc<dyn LanguageModel>);
        let primary = models.next().unwrap();
        FallbackModel::new(primary, models.collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn transient_failures_move_along_the_chain() {
        let a = Listed::new("a/x", vec![Err(LlmErrorKind::ServerError)]);
        let b = Listed::new("b/y", vec![Err(LlmErrorKind::Timeout)]);
        let c = Listed::new("c/z", vec![Ok("from c")]);
        let model = chain(&[&a, &b, &c]);
        assert_eq!(model.complete(request()).await.unwrap().content, "from c");
        assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 1));
        assert_eq!(model.name(), "a/x → b/y → c/z");
    }

    #[tokio::test]
    async fn an_untrusted_certificate_falls_back_to_another_provider() {
        let a = Listed::new("a/x", vec![Err(LlmErrorKind::Untrusted)]);
        let b = Listed::new("b/y", vec![Ok("from b")]);
        let model = chain(&[&a, &b]);
        assert_eq!(model.complete(request()).await.unwrap().content, "from b");
        assert_eq!((a.calls(), b.calls()), (1, 1));
    }

    #[tokio::test]
    async fn auth_and_invalid_requests_do_not_fall_back() {
        for kind in [LlmErrorKind::Auth, LlmErrorKind::InvalidRequest] {
            let a = Listed::new("a/x", vec![Err(kind)]);
            let b = Listed::new("b/y", vec![Ok("from b")]);
            let error = chain(&[&a, &b]).complete(request()).await.unwrap_err();
            assert_eq!(error.kind(), kind);
            assert_eq!(b.calls(), 0, "{kind:?} must not fall back");
        }
    }

    #[tokio::test]
    async fn when_every_model_fails_the_last_error_is_returned() {
        let a = Listed::new("a/x", vec![Err(LlmErrorKind::ServerError)]);
        let b = Listed::new("b/y", vec![Err(LlmErrorKind::Unreachable)]);
        let error = chain(&[&a, &b]).complete(request()).await.unwrap_err();
        assert_eq!(error.kind(), LlmErrorKind::Unreachable);
        assert_eq!(error.to_string(), "b/y failed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_model_is_skipped_for_its_cooldown() {
        let a = Listed::new("a/x", vec![Err(LlmErrorKind::RateLimited), Ok("a again")]);
        let b = Listed::new("b/y", vec![Ok("b 1"), Ok("b 2")]);
        let model = chain(&[&a, &b]).with_cooldown(Duration::from_secs(30));
        assert_eq!(model.complete(request()).await.unwrap().content, "b 1");
        assert_eq!(model.complete(request()).await.unwrap().content, "b 2");
        assert_eq!(a.calls(), 1, "skipped while cooling down");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(model.complete(request()).await.unwrap().content, "a again");
        assert_eq!(a.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_model_cools_down_they_are_tried_anyway() {
        let a = Listed::new("a/x", vec![Err(LlmErrorKind::RateLimited), Ok("a")]);
        let b = Listed::new("b/y", vec![Err(LlmErrorKind::RateLimited)]);
        let model = chain(&[&a, &b]);
        assert_eq!(model.complete(request()).await.unwrap_err().kind(), LlmErrorKind::RateLimited);
        assert_eq!(model.complete(request()).await.unwrap().content, "a");
    }

    #[tokio::test]
    async fn the_window_is_the_smallest_of_the_chain() {
        let a = Listed::new("a/x", vec![]);
        let mut small = Listed::new("b/y", vec![]);
        Arc::get_mut(&mut small).unwrap().window = 500;
        assert_eq!(chain(&[&a, &small]).context_window(), 500);
    }
}
