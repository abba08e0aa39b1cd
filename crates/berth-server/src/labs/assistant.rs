//! The labs assistant: one OpenAI-compatible chat-completions call (`[ai]`), which OpenAI,
//! Gemini's OpenAI endpoint, Ollama and vLLM all serve.

use std::time::Duration;

use serde_json::{Value, json};

use super::prompt::Message;
use crate::config::AiConfig;

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("the assistant did not answer within {0} s; try again in a moment")]
    Timeout(u64),
    #[error("the assistant's provider failed: {0}")]
    Provider(String),
}

#[derive(Debug, Clone)]
pub struct Assistant {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl Assistant {
    /// The assistant `[ai]` configures, if it names a provider. The key is read from its
    /// environment variable once, here.
    pub fn from_config(config: &AiConfig) -> Option<Self> {
        let base = config.base_url.as_deref()?;
        crate::install_tls_provider();
        let timeout = Duration::from_secs(config.timeout_seconds);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .build()
            .ok()?;
        let api_key = config
            .api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|key| !key.trim().is_empty());
        Some(Self {
            client,
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            model: config.model.clone(),
            api_key,
            timeout,
        })
    }

    /// The model's answer to `messages`.
    pub async fn ask(&self, messages: &[Message]) -> Result<String, AssistantError> {
        let body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0.2,
            "max_tokens": 400,
        });
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let call = async {
            let response = request.send().await.map_err(|err| {
                AssistantError::Provider(format!("cannot reach {}: {err}", self.url))
            })?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|err| AssistantError::Provider(err.to_string()))?;
            if !status.is_success() {
                let detail: String = text.chars().take(300).collect();
                return Err(AssistantError::Provider(format!("HTTP {status}: {detail}")));
            }
            let answer: Value = serde_json::from_str(&text).map_err(|err| {
                AssistantError::Provider(format!("an answer that is not JSON: {err}"))
            })?;
            answer["choices"][0]["message"]["content"]
                .as_str()
                .map(str::trim)
                .filter(|content| !content.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    AssistantError::Provider("an answer without choices[0].message.content".into())
                })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| AssistantError::Timeout(self.timeout.as_secs()))?
    }
}
