//! Snapshots in a registry (`snapshots.registry`): pushed after they are committed, pulled by
//! a create that misses them locally, their manifests deleted with them.
//!
//! The registry is named in the image reference itself (`127.0.0.1:5000/berth-snapshot/...`),
//! so nothing else needs to know where an image lives.

use axum::body::Body;
use bollard::{
    errors::Error as BollardError,
    models::ErrorDetail,
    query_parameters::{CreateImageOptions, PushImageOptions},
};
use futures_util::{Stream, StreamExt};
use hyper::{Method, Request, StatusCode};

use super::{DockerRuntime, map_error, within_transfer};
use crate::{
    agent_client::http_client,
    runtime::{RuntimeError, registry_of, split_tag},
};

/// The manifest kinds a registry may hold an image as; asked for all, it answers with the
/// digest a deletion needs whichever the engine pushed.
const MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, \
                         application/vnd.docker.distribution.manifest.list.v2+json, \
                         application/vnd.oci.image.manifest.v1+json, \
                         application/vnd.oci.image.index.v1+json";

impl DockerRuntime {
    pub(super) async fn push(&self, image: &str) -> Result<(), RuntimeError> {
        let (repository, tag) = split_tag(image);
        let docker = self.docker().await?;
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            ..PushImageOptions::default()
        };
        let progress = docker
            .push_image(repository, Some(options), None)
            .map(|step| step.map(|step| step.error_detail));
        self.follow(image, "pushing", progress).await
    }

    pub(super) async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let (repository, tag) = split_tag(image);
        let docker = self.docker().await?;
        let options = CreateImageOptions {
            from_image: Some(repository.to_owned()),
            tag: Some(tag.to_owned()),
            ..CreateImageOptions::default()
        };
        let progress = docker
            .create_image(Some(options), None, None)
            .map(|step| step.map(|step| step.error_detail));
        self.follow(image, "pulling", progress).await
    }

    /// Reads a push's or pull's progress to its end; an error in it fails the transfer. A
    /// transfer's time grows with the image, as a commit's does.
    async fn follow(
        &self,
        image: &str,
        doing: &str,
        progress: impl Stream<Item = Result<Option<ErrorDetail>, BollardError>>,
    ) -> Result<(), RuntimeError> {
        within_transfer(format!("{doing} {image}"), async {
            let mut progress = std::pin::pin!(progress);
            while let Some(step) = progress.next().await {
                if let Some(detail) = step.map_err(map_error)? {
                    return Err(RuntimeError::Engine(detail.message.unwrap_or_default()));
                }
            }
            Ok(())
        })
        .await
    }

    /// Deletes the image's manifest from its registry (over plain HTTP, as the engine talks to
    /// a registry on a loopback address). Succeeds when it is already gone.
    pub(super) async fn delete_manifest(&self, image: &str) -> Result<(), RuntimeError> {
        let Some(registry) = registry_of(image) else {
            return Ok(());
        };
        let (repository, tag) = split_tag(image);
        let name = &repository[registry.len() + 1..];
        let client = http_client(self.timeout);
        let manifest = format!("http://{registry}/v2/{name}/manifests/{tag}");
        let unreachable =
            |err: &dyn std::fmt::Display| RuntimeError::Unavailable(format!("{registry}: {err}"));
        let head = Request::builder()
            .method(Method::HEAD)
            .uri(&manifest)
            .header("accept", MANIFESTS)
            .body(Body::empty())
            .map_err(|err| unreachable(&err))?;
        let found = tokio::time::timeout(self.timeout, client.request(head))
            .await
            .map_err(|_| unreachable(&"no answer"))?
            .map_err(|err| unreachable(&err))?;
        if found.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let digest = found
            .headers()
            .get("docker-content-digest")
            .and_then(|digest| digest.to_str().ok())
            .ok_or_else(|| {
                RuntimeError::Engine(format!(
                    "{registry} answered {} without a digest for {image}",
                    found.status()
                ))
            })?;
        let delete = Request::builder()
            .method(Method::DELETE)
            .uri(format!("http://{registry}/v2/{name}/manifests/{digest}"))
            .body(Body::empty())
            .map_err(|err| unreachable(&err))?;
        let deleted = tokio::time::timeout(self.timeout, client.request(delete))
            .await
            .map_err(|_| unreachable(&"no answer"))?
            .map_err(|err| unreachable(&err))?;
        match deleted.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            status => Err(RuntimeError::Engine(format!(
                "{registry} refused to delete {image}: HTTP {status} (is deletion enabled in its config?)"
            ))),
        }
    }
}
