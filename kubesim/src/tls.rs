//! HTTPS: the cluster CA, the API server's serving certificate, and a TLS listener for
//! `axum::serve`.
//!
//! At start kubesim generates a cluster CA (ECDSA P-256, `kubesim-ca`) and a serving
//! certificate signed by it, valid for the names a pod or a tool may use to reach the API
//! server: the IP addresses `127.0.0.1` (and the listen address, and the `kubernetes`
//! Service's ClusterIP `10.96.0.1`), `localhost`, `kubernetes`, `kubernetes.default`,
//! `kubernetes.default.svc` and `kubernetes.default.svc.cluster.local`. Clients trust the CA
//! (kubeconfig `certificate-authority-data`, the pods' `ca.crt`, the `kube-root-ca.crt`
//! ConfigMaps); the server offers HTTP/1.1 only (ALPN `http/1.1`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// The ClusterIP of the `kubernetes` Service (see `Cluster::bootstrap_api_service`).
pub const SERVICE_IP: &str = "10.96.0.1";

/// The DNS names in the serving certificate, as kube-apiserver's own.
pub const DNS_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster CA and the serving certificate it signed.
#[derive(Clone)]
pub struct ClusterTls {
    ca_pem: String,
    ca_der: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// A fresh CA and a serving certificate for `listen`'s address and the usual names.
    pub fn generate(listen: SocketAddr) -> anyhow::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().context("generating the CA key failed")?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "kubesim-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca
            .self_signed(&ca_key)
            .context("signing the CA certificate failed")?;
        let issuer = Issuer::new(ca, ca_key);

        let mut names: Vec<String> = vec!["127.0.0.1".into(), SERVICE_IP.into()];
        let ip = listen.ip();
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
        names.extend(DNS_NAMES.iter().map(|n| n.to_string()));
        let key = KeyPair::generate().context("generating the serving key failed")?;
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing the serving certificate failed")?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![cert.der().clone()];
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("configuring TLS failed")?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .context("loading the serving certificate failed")?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate, PEM (what `ca.crt` files and `kube-root-ca.crt` hold).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Serve TLS on `listener`: handshakes run in their own tasks (a slow client holds up no
    /// other), finished connections are handed to the server.
    pub fn listen(&self, listener: TcpListener) -> TlsListener {
        let local = listener.local_addr();
        let acceptor = TlsAcceptor::from(self.server.clone());
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, as axum does.
                        tracing::debug!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener {
            rx,
            local,
            task: Some(task),
        }
    }
}

/// A TCP listener whose connections are served over TLS.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task is gone (only when the listener is dropped): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rustls client that trusts only the CA reaches the server at 127.0.0.1 (an IP SAN)
    /// and at `kubernetes.default.svc`, and one that trusts another CA is refused.
    #[tokio::test]
    async fn clients_trusting_the_ca_connect_by_ip_and_name() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = ClusterTls::generate(addr).unwrap();
        let mut served = tls.listen(listener);
        tokio::spawn(async move {
            loop {
                let (mut io, _) = axum::serve::Listener::accept(&mut served).await;
                tokio::spawn(async move {
                    let mut b = [0u8; 4];
                    if io.read_exact(&mut b).await.is_ok() {
                        let _ = io.write_all(b"pong").await;
                        let _ = io.shutdown().await;
                    }
                });
            }
        });
        let client = |ca: &[u8]| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.to_vec().into()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        let ping = |name: &'static str, connector: tokio_rustls::TlsConnector| async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            let mut io = connector.connect(name, tcp).await?;
            io.write_all(b"ping").await?;
            let mut b = Vec::new();
            io.read_to_end(&mut b).await?;
            Ok::<_, std::io::Error>(b)
        };
        for name in ["127.0.0.1", "kubernetes.default.svc", "localhost"] {
            assert_eq!(
                ping(name, client(tls.ca_der())).await.unwrap(),
                b"pong",
                "{name}"
            );
        }
        let other = ClusterTls::generate(addr).unwrap();
        assert!(ping("127.0.0.1", client(other.ca_der())).await.is_err());
        assert!(
            ping("example.com", client(tls.ca_der())).await.is_err(),
            "a name outside the certificate"
        );
        assert!(tls.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
