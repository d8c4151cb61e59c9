//! A tiny fault-injecting HTTP/1.1 proxy on a std `TcpListener`: forwards requests to an
//! upstream server (or answers them itself), and on request fails chosen endpoints with a
//! status, before or after forwarding (the "reply lost in transit" case), or demands a
//! fixed `Authorization` header. Counts requests per path.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What to do with a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status without forwarding.
    Reject(u16),
    /// Forward, drop the upstream reply, answer with this status.
    ForwardThenFail(u16),
    /// Answer with this status and JSON body without forwarding.
    Reply(u16, String),
}

#[derive(Default)]
struct State {
    rules: Vec<(String, Fault, u32)>,
    hits: HashMap<String, u32>,
    auth: Option<String>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Starts the proxy in front of `upstream` (`host:port`), or alone.
    pub fn start(upstream: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &state, upstream.as_deref());
                });
            }
        });
        Self { url, state }
    }

    /// The next `times` requests whose path contains `path` get `fault`.
    pub fn fail(&self, path: &str, fault: Fault, times: u32) {
        self.state
            .lock()
            .unwrap()
            .rules
            .push((path.to_string(), fault, times));
    }

    /// Requests without exactly this `Authorization` value get 401.
    pub fn require_auth(&self, header: &str) {
        self.state.lock().unwrap().auth = Some(header.to_string());
    }

    /// How many requests had a path containing `path`.
    pub fn hits(&self, path: &str) -> u32 {
        let state = self.state.lock().unwrap();
        state
            .hits
            .iter()
            .filter(|(p, _)| p.contains(path))
            .map(|(_, n)| n)
            .sum()
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn handle(
    mut stream: TcpStream,
    state: &Mutex<State>,
    upstream: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let lower = name.to_ascii_lowercase();
        if lower == "content-length" {
            length = value.trim().parse().unwrap_or(0);
        }
        if lower == "authorization" {
            authorization = Some(value.trim().to_string());
        }
        if lower != "connection" {
            headers.push(line);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();

    let fault = {
        let mut state = state.lock().unwrap();
        *state.hits.entry(path.clone()).or_default() += 1;
        if state.auth.is_some() && state.auth != authorization {
            drop(state);
            return respond(
                &mut stream,
                401,
                r#"{"error_code":"UNAUTHENTICATED","message":"bad credentials"}"#,
            );
        }
        let rule = state
            .rules
            .iter_mut()
            .find(|(p, _, left)| *left > 0 && path.contains(p.as_str()));
        rule.map(|(_, fault, left)| {
            *left -= 1;
            fault.clone()
        })
    };
    let error_body = r#"{"error_code":"INTERNAL_ERROR","message":"injected fault"}"#;
    match fault {
        Some(Fault::Reject(status)) => return respond(&mut stream, status, error_body),
        Some(Fault::Reply(status, body)) => return respond(&mut stream, status, &body),
        _ => {}
    }
    let Some(upstream) = upstream else {
        return respond(
            &mut stream,
            502,
            r#"{"error_code":"BAD_GATEWAY","message":"no upstream"}"#,
        );
    };
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(request_line.as_bytes())?;
    for header in &headers {
        up.write_all(header.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    up.flush()?;
    let mut reply = Vec::new();
    up.read_to_end(&mut reply)?;
    if let Some(Fault::ForwardThenFail(status)) = fault {
        return respond(&mut stream, status, error_body);
    }
    stream.write_all(&reply)?;
    stream.flush()
}
