//! Files inside a session. Bodies stream: nothing here holds a whole file in memory.

use berth_proto::files::{FileEntry, FileEvent, FileList, MakeDir, MoveFile};
use futures_util::StreamExt;
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::{Client, ClientError, encode, process::Socket};

impl Client {
    pub(crate) fn session_path(id: &str, rest: &str) -> String {
        format!("/api/v1/sessions/{}/{rest}", encode(id))
    }

    pub async fn list_files(&self, id: &str, path: &str) -> Result<FileList, ClientError> {
        let query = [("path", path.to_owned())];
        self.expect(
            Method::GET,
            &Self::session_path(id, "files"),
            &query,
            None::<&()>,
        )
        .await
    }

    pub async fn stat_file(&self, id: &str, path: &str) -> Result<FileEntry, ClientError> {
        let query = [("path", path.to_owned())];
        self.expect(
            Method::GET,
            &Self::session_path(id, "files/stat"),
            &query,
            None::<&()>,
        )
        .await
    }

    pub async fn make_dir(&self, id: &str, path: &str) -> Result<FileEntry, ClientError> {
        let body = MakeDir {
            path: path.to_owned(),
        };
        self.expect(
            Method::POST,
            &Self::session_path(id, "files/mkdir"),
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn move_file(
        &self,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<FileEntry, ClientError> {
        let body = MoveFile {
            from: from.to_owned(),
            to: to.to_owned(),
            overwrite: false,
        };
        self.expect(
            Method::POST,
            &Self::session_path(id, "files/move"),
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn remove_file(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let query = [
            ("path", path.to_owned()),
            ("recursive", recursive.to_string()),
        ];
        self.send::<serde_json::Value>(
            Method::DELETE,
            &Self::session_path(id, "files"),
            &query,
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Writes `body` to `path`, creating parents; the old file is replaced once the upload ends.
    pub async fn upload(
        &self,
        id: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<FileEntry, ClientError> {
        let route = Self::session_path(id, "files/content");
        let request = self
            .request(Method::PUT, &route)
            .query(&[("path", path)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let response = self.checked(&route, request).await?;
        response.json().await.map_err(self.transport(&route))
    }

    /// The file's bytes as a streaming response (`bytes_stream()`, `chunk()`).
    pub async fn download(&self, id: &str, path: &str) -> Result<reqwest::Response, ClientError> {
        let route = Self::session_path(id, "files/content");
        self.checked(
            &route,
            self.request(Method::GET, &route).query(&[("path", path)]),
        )
        .await
    }

    /// Unpacks a tar stream into `dir`, keeping modes and symlinks.
    pub async fn upload_archive(
        &self,
        id: &str,
        dir: &str,
        tar: impl Into<reqwest::Body>,
    ) -> Result<(), ClientError> {
        let route = Self::session_path(id, "files/archive");
        let request = self
            .request(Method::PUT, &route)
            .query(&[("path", dir)])
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .body(tar);
        self.checked(&route, request).await.map(drop)
    }

    /// `dir` as a streaming tar.
    pub async fn download_archive(
        &self,
        id: &str,
        dir: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let route = Self::session_path(id, "files/archive");
        self.checked(
            &route,
            self.request(Method::GET, &route).query(&[("path", dir)]),
        )
        .await
    }
}

/// Change events under a watched directory.
#[derive(Debug)]
pub struct FileWatch(Socket);

impl FileWatch {
    /// The next change; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<FileEvent> {
        loop {
            match self.0.next().await? {
                Ok(Message::Text(text)) => {
                    if let Ok(event) = serde_json::from_str(&text) {
                        return Some(event);
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

impl Client {
    /// Watches `dir` and its subdirectories for created, modified and removed files.
    pub async fn watch_files(&self, id: &str, dir: &str) -> Result<FileWatch, ClientError> {
        let query = format!("path={}", encode(dir));
        let route = format!("{}?{query}", Self::session_path(id, "files/watch"));
        Ok(FileWatch(self.websocket(&route).await?))
    }
}
