//! The gRPC form of `serve_bench load`: CLIENTS tasks, each on its own
//! HTTP/2 connection (tonic's generated client over hyper's HTTP/2
//! connection, without the request queue, task and reconnect layer of
//! tonic's `Channel`), sending UINT8 `raw_input_contents` requests without
//! pause and asking for the label.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;

use trainerd::serve::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use trainerd::serve::grpc::pb::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use trainerd::serve::grpc::pb::ModelInferRequest;

fn request(images: usize) -> ModelInferRequest {
    let pixels: Vec<u8> = (0..images * 784).map(|i| (i * 7 % 256) as u8).collect();
    ModelInferRequest {
        model_name: "trainerd".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "UINT8".into(),
            shape: vec![images as i64, 784],
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: "label".into(),
            ..Default::default()
        }],
        raw_input_contents: vec![pixels.into()],
        ..Default::default()
    }
}

/// Each call's latency until `seconds` pass, and the failures.
pub fn load(addr: &str, clients: usize, images: usize, seconds: usize) -> (Vec<Duration>, usize) {
    // One thread drives every connection: the load generator's own CPU
    // comes out of the cores the server is measured on.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let url = addr.to_string();
    rt.block_on(async {
        let end = Instant::now() + Duration::from_secs(seconds as u64);
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, req) = (url.clone(), request(images));
                tokio::spawn(async move {
                    let mut client = connect(&url).await;
                    let (mut lat, mut failed) = (Vec::new(), 0usize);
                    while Instant::now() < end {
                        let t = Instant::now();
                        match client.model_infer(req.clone()).await {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(_) => failed += 1,
                        }
                    }
                    (lat, failed)
                })
            })
            .collect();
        let (mut lat, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (l, f) = t.await.expect("client task");
            lat.extend(l);
            failed += f;
        }
        (lat, failed)
    })
}

/// One HTTP/2 connection as the service tonic's client sends through.
#[derive(Clone)]
struct Conn(hyper::client::conn::http2::SendRequest<Body>);

type Answer = Result<http::Response<hyper::body::Incoming>, hyper::Error>;

impl tower::Service<http::Request<Body>> for Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// tonic's client on one HTTP/2 connection to `addr`, driven on this runtime.
async fn connect(addr: &str) -> GrpcInferenceServiceClient<Conn> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let origin = format!("http://{addr}").parse().expect("origin");
    GrpcInferenceServiceClient::with_origin(Conn(send), origin)
}
