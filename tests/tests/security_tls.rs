//! TLS: a relay in the test terminates TLS with a certificate for
//! `localhost` signed by a CA made in the test (rcgen), and forwards plain
//! AMQP to the broker. A client refuses the untrusted certificate and a
//! certificate for another name (typed `Connect` errors), and makes a real
//! call through it once given the CA with `tls_ca_pem`.

mod security_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rpc_core::TransportError;
use rpc_tests::broker::amqp_builder;
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_transport_amqp::AmqpTransport;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use security_support::{BrokerUrl, escape};

/// A CA and a server certificate for `localhost` it signed.
struct Pki {
    ca_pem: String,
    server_config: Arc<ServerConfig>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rpc-tests throw-away CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");

    // The provider is named, not taken from a process default: only ring is
    // compiled in, and naming it keeps that true if another one appears.
    let server_config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("server config");
    Pki {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(server_config),
    }
}

/// A TLS-terminating relay to the broker on an ephemeral port of 127.0.0.1;
/// counts completed handshakes.
async fn tls_relay(
    config: Arc<ServerConfig>,
) -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    let broker = BrokerUrl::from_env();
    let acceptor = TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            let upstream = (broker.host.clone(), broker.port);
            tokio::spawn(async move {
                // A refused handshake just ends this connection.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, handshakes, task)
}

fn amqps_url(host: &str, port: u16) -> String {
    let broker = BrokerUrl::from_env();
    format!(
        "amqps://{}:{}@{host}:{port}/{}",
        escape(&broker.user),
        escape(&broker.password),
        escape(&broker.vhost)
    )
}

async fn refused(label: &str, builder: rpc_transport_amqp::AmqpTransportBuilder) -> String {
    let started = std::time::Instant::now();
    let result = builder
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await;
    match result {
        Err(error @ TransportError::Connect { .. }) => {
            let text = error.to_string();
            eprintln!(
                "measured: tls/{label}: Connect error after {:?}: {text}",
                started.elapsed()
            );
            text
        }
        other => panic!("{label}: expected a Connect error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_certificate_and_the_name_then_carries_calls() {
    let Some(builder) = amqp_builder("tls").await else {
        return;
    };
    let pki = pki();
    let (port, handshakes, relay) = tls_relay(pki.server_config.clone()).await;

    // 1. Default verification (Mozilla roots): our CA is unknown.
    let text = refused(
        "untrusted-ca",
        AmqpTransport::builder(amqps_url("localhost", port)),
    )
    .await;
    assert!(text.contains("UnknownIssuer"), "{text}");

    // 2. The CA is trusted, but the certificate names `localhost`, not the
    // address we dialled.
    let text = refused(
        "wrong-name",
        AmqpTransport::builder(amqps_url("127.0.0.1", port)).tls_ca_pem(pki.ca_pem.clone()),
    )
    .await;
    assert!(text.contains("not valid for name"), "{text}");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "a handshake completed"
    );

    // 3. The CA and the right name: a real call through the relay.
    let server = builder
        .clone()
        .connect()
        .await
        .expect("plain server connection");
    let fixture = serve_calc(server.clone(), 1, 4).await;
    let client = AmqpTransport::builder(amqps_url("localhost", port))
        .queue_prefix(server.request_queue(""))
        .tls_ca_pem(pki.ca_pem.clone())
        .connect()
        .await
        .expect("TLS connection with the CA");
    let calc = CalcClient::new(client.clone());
    assert_eq!(calc.add(20, 22).await.expect("a call over TLS"), 42);
    let done = handshakes.load(Ordering::SeqCst);
    eprintln!("measured: tls/trusted: call over TLS answered; {done} handshake(s) completed");
    assert_eq!(done, 1);

    client.cleanup().await.expect("cleanup");
    fixture.server.shutdown().await;
    server.cleanup().await.expect("cleanup");
    relay.abort();
}
