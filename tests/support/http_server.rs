//! A small HTTP/1.1 server on 127.0.0.1 for the download tests: fixed routes, byte ranges,
//! redirects, bodies cut off halfway, and a log of every request. It stands in for PyPI, the
//! Hugging Face Hub and the dataset hosts, which the test machines cannot reach.
//!
//! Shared by the library's unit tests (`src/hub/http.rs` includes it with `#[path]`) and the
//! integration tests (`tests/it/main.rs`), so there is one copy.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the server answers on one path.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes, though `Content-Length` announced all.
    cut_after: Option<usize>,
    /// `(header, value)` a request must carry, else `401` (a gated repository).
    require: Option<(String, String)>,
}

impl Reply {
    /// `200 OK` with `body` (byte ranges answered with `206`).
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            cut_after: None,
            require: None,
        }
    }

    /// An empty reply with `status`.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_after: None,
            require: None,
        }
    }

    /// A redirect (`status` 301/302/307/308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::status(status).header("Location", location)
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Answers `401` unless the request carries `header: value` (names compare in lowercase).
    pub fn only_with(mut self, header: &str, value: &str) -> Reply {
        self.require = Some((header.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sends only the first `n` body bytes, then closes the connection.
    pub fn cut_after(mut self, n: usize) -> Reply {
        self.cut_after = Some(n);
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    log: Vec<Request>,
}

/// The server; it stops when dropped.
pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Binds an ephemeral port on 127.0.0.1 and serves in a background thread.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let st = Arc::clone(&st);
                thread::spawn(move || serve(stream, &st));
            }
        });
        Server { port, state, stop }
    }

    /// `http://127.0.0.1:<port>` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers `path` (exact, without query) with `reply` from now on.
    pub fn route(&self, path: &str, reply: Reply) {
        self.lock().routes.insert(path.to_string(), reply);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking handler thread must not hide the log from the test.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let reply = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.log.push(request.clone());
        st.routes.get(&request.path).cloned()
    };
    let reply = match reply {
        None => Reply::status(404),
        Some(r) => match &r.require {
            Some((h, v)) if request.headers.get(h) != Some(v) => Reply::status(401),
            _ => r,
        },
    };
    let (status, body) = match (reply.status, request.headers.get("range")) {
        (200, Some(range)) => match parse_range(range, reply.body.len()) {
            Some((start, end)) => (206, reply.body[start..=end].to_vec()),
            None => (416, Vec::new()),
        },
        _ => (reply.status, reply.body.clone()),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if status == 206 {
        let range = request.headers.get("range").map(String::as_str);
        let (start, end) = parse_range(range.unwrap_or(""), reply.body.len()).unwrap_or((0, 0));
        head.push_str(&format!(
            "Content-Range: bytes {start}-{end}/{}\r\n",
            reply.body.len()
        ));
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let n = reply.cut_after.unwrap_or(body.len()).min(body.len());
        let _ = stream.write_all(&body[..n]);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

/// `bytes=a-b`, `bytes=a-` as inclusive `(start, end)` within `len` bytes.
fn parse_range(range: &str, len: usize) -> Option<(usize, usize)> {
    let spec = range.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: usize = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len.checked_sub(1)?,
        b => b.parse::<usize>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    }
}
