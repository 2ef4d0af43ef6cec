//! A small CloudWatch metrics endpoint for the tests (the one double the project allows besides
//! IMDS: moto does not speak the Smithy RPC v2 CBOR protocol the current aws-sdk-cloudwatch
//! uses). It decodes what the real SDK sends — CBOR, gzipped when large — keeps every datum
//! for the assertions, and answers like the service: 200, `application/cbor`, an empty map.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ciborium::Value;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// One datum as CloudWatch received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
    pub unit: Option<String>,
    pub timestamp: Option<f64>,
    /// (sample count, sum, minimum, maximum)
    pub stats: Option<(f64, f64, f64, f64)>,
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
    pub storage_resolution: Option<i64>,
}

/// What each call looked like on the wire.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub content_type: Option<String>,
    pub protocol: Option<String>,
    pub gzipped: bool,
}

#[derive(Debug, Default)]
struct Log {
    calls: Vec<Call>,
    datums: Vec<Received>,
}

#[derive(Debug, Clone)]
pub struct FakeCloudWatch {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl FakeCloudWatch {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, shared));
        });
        Self { addr, log }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn datums(&self) -> Vec<Received> {
        self.log.lock().expect("log").datums.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().expect("log").calls.clone()
    }
}

async fn serve(listener: std::net::TcpListener, log: Arc<Mutex<Log>>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let log = log.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(request, log.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    log: Arc<Mutex<Log>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let call = Call {
        path: request.uri().path().to_string(),
        content_type: header("content-type"),
        protocol: header("smithy-protocol"),
        gzipped: header("content-encoding").is_some_and(|e| e.contains("gzip")),
    };
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let raw = if call.gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        body.to_vec()
    };
    let datums = if call.path.ends_with("/operation/PutMetricData") {
        let document: Value = ciborium::from_reader(&raw[..]).expect("CBOR body");
        decode_put_metric_data(&document)
    } else {
        Vec::new()
    };
    {
        let mut log = log.lock().expect("log");
        log.calls.push(call);
        log.datums.extend(datums);
    }
    let mut empty_map = Vec::new();
    ciborium::into_writer(&Value::Map(Vec::new()), &mut empty_map).expect("encode");
    let response = Response::builder()
        .status(200)
        .header("content-type", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .body(Full::new(Bytes::from(empty_map)))
        .expect("response");
    Ok(response)
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(i128::from(*i) as f64),
        Value::Tag(_, inner) => number(Some(inner)),
        _ => None,
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn decode_put_metric_data(document: &Value) -> Vec<Received> {
    let namespace = text(field(document, "Namespace")).unwrap_or_default();
    array(field(document, "MetricData"))
        .iter()
        .map(|datum| {
            let stats = field(datum, "StatisticValues").map(|s| {
                (
                    number(field(s, "SampleCount")).unwrap_or(f64::NAN),
                    number(field(s, "Sum")).unwrap_or(f64::NAN),
                    number(field(s, "Minimum")).unwrap_or(f64::NAN),
                    number(field(s, "Maximum")).unwrap_or(f64::NAN),
                )
            });
            Received {
                namespace: namespace.clone(),
                name: text(field(datum, "MetricName")).unwrap_or_default(),
                dimensions: array(field(datum, "Dimensions"))
                    .iter()
                    .map(|d| {
                        (
                            text(field(d, "Name")).unwrap_or_default(),
                            text(field(d, "Value")).unwrap_or_default(),
                        )
                    })
                    .collect(),
                unit: text(field(datum, "Unit")),
                timestamp: number(field(datum, "Timestamp")),
                stats,
                values: array(field(datum, "Values"))
                    .iter()
                    .filter_map(|v| number(Some(v)))
                    .collect(),
                counts: array(field(datum, "Counts"))
                    .iter()
                    .filter_map(|v| number(Some(v)))
                    .collect(),
                storage_resolution: number(field(datum, "StorageResolution")).map(|n| n as i64),
            }
        })
        .collect()
}
