//! The client of a media node's internal API, for signalling nodes: the same operations as the
//! [`sfu::Sfu`] handle, over signed HTTP requests, with the same [`MediaError`]s.
//!
//! A node that cannot be reached in time (connection refused, connect or request timeout) is
//! [`MediaError::Unavailable`]. The node's refusals map back: `invalid` to
//! [`MediaError::BadSdp`] (offers) or [`MediaError::BadCandidate`] (everything else), `not_found`
//! to [`MediaError::NoConnection`], `unavailable` to [`MediaError::Unavailable`]. A refused
//! signature (a different secret, or clocks more than 30 s apart) and anything unexpected is
//! [`MediaError::Internal`], since retrying will not help.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sfu::{Answer, CallStats, Candidate, MediaError, MediaLoad, Participant};

use crate::api::{
    Ack, CandidateRequest, EndRequest, ErrorBody, HealthAnswer, HeldRequest, LeaveRequest,
    NodeLoad, OfferAnswer, OfferRequest, StatsAnswer, PREFIX,
};
use crate::auth::{self, Secret};

/// How long a connection to a media node may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request to a media node may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A media node's internal API. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct MediaNodeClient {
    base: Url,
    secret: Arc<Secret>,
    http: reqwest::Client,
}

/// How a `400 invalid` of a route maps back.
type BadInput = fn(String) -> MediaError;

impl MediaNodeClient {
    /// A client of the node whose internal API is at `base_url` (`http://10.0.0.5:8081`, as in
    /// [`crate::NodeInfo::internal_url`]), signing with `secret`, with the default timeouts
    /// ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]). Fails (`Internal`) on a URL that is not
    /// `http(s)://…`.
    pub fn new(base_url: &str, secret: Arc<Secret>) -> Result<Self, MediaError> {
        Self::with_timeouts(base_url, secret, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// [`MediaNodeClient::new`] with other timeouts.
    pub fn with_timeouts(
        base_url: &str,
        secret: Arc<Secret>,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, MediaError> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| MediaError::Internal(format!("bad media node URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https")
            || base.cannot_be_a_base()
            || base.query().is_some()
        {
            return Err(MediaError::Internal(format!(
                "bad media node URL {base_url:?}: not an http(s) base URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .build()
            .map_err(|e| MediaError::Internal(format!("HTTP client: {e}")))?;
        Ok(MediaNodeClient { base, secret, http })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// [`sfu::Sfu::offer`] on the node.
    pub async fn offer(
        &self,
        call_id: &str,
        who: Participant,
        sdp: String,
        held: bool,
    ) -> Result<Answer, MediaError> {
        let body = OfferRequest {
            call_id: call_id.to_owned(),
            principal: who.principal,
            role: who.role,
            sdp,
            held,
        };
        let answer: OfferAnswer = self
            .call(Method::POST, "offer", Some(&body), MediaError::BadSdp)
            .await?;
        Ok(answer.into())
    }

    /// [`sfu::Sfu::candidate`] on the node.
    pub async fn candidate(
        &self,
        call_id: &str,
        who: Participant,
        candidate: Candidate,
    ) -> Result<(), MediaError> {
        let body = CandidateRequest {
            call_id: call_id.to_owned(),
            principal: who.principal,
            role: who.role,
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
        };
        self.ack("candidate", &body).await
    }

    /// [`sfu::Sfu::set_held`] on the node.
    pub async fn set_held(&self, call_id: &str, held: bool) -> Result<(), MediaError> {
        let body = HeldRequest {
            call_id: call_id.to_owned(),
            held,
        };
        self.ack("held", &body).await
    }

    /// [`sfu::Sfu::leave`] on the node.
    pub async fn leave(&self, call_id: &str, who: Participant) -> Result<(), MediaError> {
        let body = LeaveRequest {
            call_id: call_id.to_owned(),
            principal: who.principal,
            role: who.role,
        };
        self.ack("leave", &body).await
    }

    /// [`sfu::Sfu::end_call`] on the node.
    pub async fn end_call(&self, call_id: &str) -> Result<(), MediaError> {
        let body = EndRequest {
            call_id: call_id.to_owned(),
        };
        self.ack("end", &body).await
    }

    /// [`sfu::Sfu::stats`] on the node.
    pub async fn stats(&self) -> Result<Vec<CallStats>, MediaError> {
        let answer: StatsAnswer = self
            .call(Method::GET, "stats", None::<&()>, MediaError::BadCandidate)
            .await?;
        Ok(answer.calls)
    }

    /// [`sfu::Sfu::health`] on the node: its live peer connections, or `Unavailable`.
    pub async fn health(&self) -> Result<usize, MediaError> {
        let answer: HealthAnswer = self
            .call(Method::GET, "health", None::<&()>, MediaError::BadCandidate)
            .await?;
        Ok(answer.peers)
    }

    /// [`sfu::Sfu::load`] on the node.
    pub async fn load(&self) -> Result<MediaLoad, MediaError> {
        let answer: NodeLoad = self
            .call(Method::GET, "load", None::<&()>, MediaError::BadCandidate)
            .await?;
        Ok(answer.into())
    }

    async fn ack(&self, route: &str, body: &impl Serialize) -> Result<(), MediaError> {
        let _: Ack = self
            .call(Method::POST, route, Some(body), MediaError::BadCandidate)
            .await?;
        Ok(())
    }

    /// One signed request to `PREFIX/route`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<&impl Serialize>,
        bad_input: BadInput,
    ) -> Result<T, MediaError> {
        let mut url = self.base.clone();
        let path = format!("{}{PREFIX}/{route}", self.base.path().trim_end_matches('/'));
        url.set_path(&path);
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| MediaError::Internal(format!("request body: {e}")))?,
            None => Vec::new(),
        };
        let signed_path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let header = auth::sign(
            &self.secret,
            method.as_str(),
            &signed_path,
            &bytes,
            auth::now_ms(),
        );
        let mut request = self.http.request(method, url).header(auth::HEADER, header);
        if body.is_some() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            return serde_json::from_slice(&text).map_err(|e| {
                MediaError::Internal(format!("media node {}: bad answer: {e}", self.base))
            });
        }
        let message = serde_json::from_slice::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => bad_input(message),
            StatusCode::NOT_FOUND => MediaError::NoConnection,
            StatusCode::SERVICE_UNAVAILABLE => MediaError::Unavailable,
            StatusCode::UNAUTHORIZED => {
                tracing::error!(
                    node = %self.base,
                    %message,
                    "media node refused our signature: check the shared secret and the clocks"
                );
                MediaError::Internal(format!("media node {} refused us: {message}", self.base))
            }
            _ => MediaError::Internal(format!("media node {}: {status}: {message}", self.base)),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> MediaError {
        tracing::warn!(node = %self.base, error = %e, "media node unreachable");
        MediaError::Unavailable
    }
}
