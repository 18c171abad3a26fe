//! The tenant's traffic boundary at the Caddy edge.
//!
//! Owns the edge's one static configuration (installed through Caddy's admin API) and the
//! per-tenant route files under the runtime dir that the configuration consults on every
//! request: `routes/<label>` (the route exists; the public gets 503), `public/<label>`
//! (public traffic flows) and `upstreams/<label>.sock` (a symlink to the workload's
//! socket). Adding, opening, closing or removing a tenant's route is a file operation, so
//! it never reloads Caddy and costs the same at ten tenants as at ten thousand.
//!
//! Two listeners, both HTTPS with the one wildcard certificate of `*.<domain>` from Caddy's
//! internal CA: the public one (route file and public marker), and the platform one on
//! loopback (route file only), through which the verify phase checks a tenant over the
//! real certificate before the public may reach it.
//!
//! Must never touch a route file that names another tenant, never reload Caddy for a
//! tenant change, and never give the public a path to a workload whose marker is absent.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenant_domain::{Allocation, ResourceKind, TenantSpec};
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::{ActivitiesConfig, StepError, StepResult};

/// The response header by which a client can tell the edge proxied it to a workload.
const SERVED_BY_HEADER: &str = "x-served-by";
const SERVED_BY_VALUE: &str = "tenant-edge";

/// The edge in front of every tenant workload on this host.
pub struct Edge {
    cfg: Arc<ActivitiesConfig>,
    http: reqwest::Client,
}

/// What `routes/<label>` says: whose route it is and where it leads. Its mere existence is
/// what Caddy checks; the content tells a later allocation whether it may adopt the route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RouteFile {
    tenant_id: Uuid,
    host: String,
    route_id: String,
    /// The workload socket the `upstreams/<label>.sock` symlink points at.
    upstream: PathBuf,
}

/// Who holds a host label at the edge, as the route file says.
enum RouteOwner {
    Nobody,
    This,
    Another,
    /// A file we did not write (ours are always complete: written aside, then linked).
    Unreadable(String),
}

/// The directories of the runtime dir the edge works in.
struct Layout {
    routes: PathBuf,
    public: PathBuf,
    upstreams: PathBuf,
    workloads: PathBuf,
}

impl Layout {
    fn new(runtime_dir: &Path) -> Self {
        Self {
            routes: runtime_dir.join("routes"),
            public: runtime_dir.join("public"),
            upstreams: runtime_dir.join("upstreams"),
            workloads: runtime_dir.join("workloads"),
        }
    }

    fn route(&self, label: &str) -> PathBuf {
        self.routes.join(label)
    }

    fn marker(&self, label: &str) -> PathBuf {
        self.public.join(label)
    }

    fn upstream_link(&self, label: &str) -> PathBuf {
        self.upstreams.join(format!("{label}.sock"))
    }

    /// The workload's socket, named after the tenant id as the workload driver names it.
    fn workload_socket(&self, tenant_id: Uuid) -> PathBuf {
        self.workloads.join(format!("{}.sock", tenant_id.simple()))
    }
}

impl Edge {
    pub fn new(cfg: Arc<ActivitiesConfig>) -> Self {
        let http = reqwest::Client::builder()
            // The admin API is on loopback: a proxy from the environment must not intercept it.
            .no_proxy()
            // Every config load replaces Caddy's admin server and resets connections kept
            // open to the old one: a fresh connection per call never meets a dead one.
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with only a timeout, no pool and no proxy always builds");
        Self { cfg, http }
    }

    /// Installs the static edge config through Caddy's admin API when it is missing or
    /// differs from [`Edge::desired_config`]. An unchanged config costs one GET.
    #[instrument(name = "edge.ensure_config", skip_all, fields(admin = %self.cfg.caddy_admin_url))]
    pub async fn ensure_config(&self) -> StepResult<()> {
        let desired = self.desired_config();
        let current: Value = self
            .http
            .get(self.admin_url("/config/"))
            .send()
            .await
            .context("reading the edge config from Caddy's admin API")?
            .error_for_status()?
            .json()
            .await
            .context("parsing the edge config from Caddy's admin API")?;
        if current == desired {
            debug!("edge config is current");
            return Ok(());
        }

        // Our Caddy serves nothing else, so the whole config is ours to replace.
        let response = self
            .http
            .post(self.admin_url("/load"))
            .json(&desired)
            .send()
            .await
            .context("loading the edge config through Caddy's admin API")?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            // Retried: a port held by another process or a Caddy mid-restart can clear up,
            // and until then the phase stays visibly stuck with Caddy's own words.
            return Err(StepError::Transient(anyhow!(
                "caddy refused the edge config ({status}): {}",
                body.trim()
            )));
        }
        info!(
            public_port = self.cfg.public_https_port,
            platform_port = self.cfg.platform_http_port,
            "edge config installed"
        );
        Ok(())
    }

    /// The edge config: a public HTTPS listener gated by the route file and the public
    /// marker, and a platform HTTPS listener on loopback gated by the route file only.
    pub fn desired_config(&self) -> Value {
        let domain = &self.cfg.domain;
        let wildcard = format!("*.{domain}");
        let layout = Layout::new(&self.cfg.runtime_dir);
        // Caddy numbers host labels from the right, so the tenant's label comes right after
        // the domain's own labels.
        let label = format!("{{http.request.host.labels.{}}}", domain.split('.').count());
        let dial = format!("unix/{}/{label}.sock", layout.upstreams.display());
        let route_file = json!({"file": {"root": layout.routes, "try_files": [label]}});
        let public_marker = json!({"file": {"root": layout.public, "try_files": [label]}});
        let not_found = json!({
            "handler": "static_response",
            "status_code": 404,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": "no tenant at this address\n",
        });
        let not_serving = json!({
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": "tenant {http.request.host} is not serving traffic (not yet active, or suspended)\n",
        });
        // Upstream connections are not kept alive: each request dials the upstream symlink
        // afresh, so a changed or removed route takes effect at once (a pooled connection
        // would keep reaching the old workload), and a unix socket connection costs little.
        let proxy = json!({
            "handler": "reverse_proxy",
            "upstreams": [{"dial": dial}],
            "transport": {"protocol": "http", "keep_alive": {"enabled": false}},
        });
        let served_by = json!({
            "handler": "headers",
            "response": {"set": {SERVED_BY_HEADER: [SERVED_BY_VALUE]}},
        });

        json!({
            "admin": {"listen": self.admin_listen()},
            "apps": {
                "pki": {"certificate_authorities": {"local": {"install_trust": false}}},
                "tls": {"automation": {"policies": [
                    {"subjects": [wildcard], "issuers": [{"module": "internal"}]}
                ]}},
                "http": {"servers": {
                    "public": {
                        "listen": [format!("127.0.0.1:{}", self.cfg.public_https_port)],
                        // No HTTP/3: it would open a UDP listener nobody asked for.
                        "protocols": ["h1", "h2"],
                        "automatic_https": {"disable_redirects": true},
                        "routes": [
                            {
                                "match": [{"host": [wildcard]}],
                                "handle": [{"handler": "subroute", "routes": [
                                    {
                                        "match": [public_marker],
                                        "handle": [{"handler": "subroute", "routes": [
                                            {"match": [route_file], "handle": [served_by, proxy]}
                                        ]}],
                                    },
                                    {"match": [route_file], "handle": [not_serving]},
                                    {"handle": [not_found]},
                                ]}],
                                "terminal": true,
                            },
                            {"handle": [not_found]},
                        ],
                    },
                    "platform": {
                        "listen": [format!("127.0.0.1:{}", self.cfg.platform_http_port)],
                        // HTTPS with the public listener's certificate, so a check through
                        // it sees what a client of the public host will see.
                        "protocols": ["h1", "h2"],
                        "automatic_https": {"disable_redirects": true},
                        "tls_connection_policies": [{}],
                        "routes": [
                            {
                                "match": [{"host": [wildcard], "file": route_file["file"]}],
                                "handle": [proxy],
                                "terminal": true,
                            },
                            {"handle": [not_found]},
                        ],
                    },
                }},
            },
        })
    }

    /// Claims the tenant's host label at the edge: the route file (created exclusively)
    /// and the upstream symlink. Public traffic still gets 503 until [`Edge::open_public`].
    #[instrument(name = "edge.allocate", skip_all, fields(tenant = %spec.names.host))]
    pub async fn allocate(&self, spec: &TenantSpec) -> StepResult<Allocation> {
        self.ensure_config().await?;

        let layout = Layout::new(&self.cfg.runtime_dir);
        let wanted = route_for(&layout, spec);
        let label = spec.names.label.clone();
        let adopted = blocking(move || claim_route(&layout, &label, &wanted)).await?;

        info!(route_id = %spec.names.route_id, adopted, "route allocated");
        Ok(Allocation {
            kind: ResourceKind::Traffic,
            name: spec.names.route_id.clone(),
            adopted,
        })
    }

    /// Lets public traffic through to the workload: creates the public marker, only on a
    /// route that is this tenant's.
    #[instrument(name = "edge.open_public", skip_all, fields(tenant = %spec.names.host))]
    pub async fn open_public(&self, spec: &TenantSpec) -> StepResult<()> {
        let layout = Layout::new(&self.cfg.runtime_dir);
        let (id, label, host) = (
            spec.tenant_id(),
            spec.names.label.clone(),
            spec.names.host.clone(),
        );
        blocking(move || {
            match owner(&layout, &label, id)? {
                RouteOwner::This => {}
                RouteOwner::Nobody => {
                    return Err(StepError::permanent(
                        "RouteMissing",
                        format!(
                            "no route for {host} at the edge: allocate traffic before opening it"
                        ),
                    ));
                }
                RouteOwner::Another | RouteOwner::Unreadable(_) => return Err(route_taken(&host)),
            }
            fs_err(
                std::fs::create_dir_all(&layout.public),
                "creating the public marker dir",
            )?;
            write_replacing(&layout.marker(&label), format!("{id}\n").as_bytes())
                .context("writing the public marker")?;
            Ok(())
        })
        .await?;
        info!("public traffic open");
        Ok(())
    }

    /// Turns public traffic back to 503 (suspend). The platform listener still reaches the
    /// workload. Leaves another tenant's marker alone.
    #[instrument(name = "edge.close_public", skip_all, fields(tenant = %spec.names.host))]
    pub async fn close_public(&self, spec: &TenantSpec) -> StepResult<()> {
        let layout = Layout::new(&self.cfg.runtime_dir);
        let (id, label) = (spec.tenant_id(), spec.names.label.clone());
        blocking(move || {
            if let RouteOwner::Another | RouteOwner::Unreadable(_) = owner(&layout, &label, id)? {
                warn!("the route at this label is not this tenant's; leaving it alone");
                return Ok(());
            }
            remove_if_present(&layout.marker(&label)).context("removing the public marker")?;
            Ok(())
        })
        .await?;
        info!("public traffic closed");
        Ok(())
    }

    /// Removes the tenant's public marker, upstream symlink and route file, in that order
    /// (the route file last, since it is the claim). Nothing to remove is success.
    #[instrument(name = "edge.release", skip_all, fields(tenant = %spec.names.host))]
    pub async fn release(&self, spec: &TenantSpec) -> StepResult<()> {
        let layout = Layout::new(&self.cfg.runtime_dir);
        let (id, label) = (spec.tenant_id(), spec.names.label.clone());
        let released = blocking(move || {
            match owner(&layout, &label, id)? {
                RouteOwner::This => {}
                RouteOwner::Nobody => return Ok(false),
                RouteOwner::Another | RouteOwner::Unreadable(_) => {
                    warn!("the route at this label is not this tenant's; leaving it alone");
                    return Ok(false);
                }
            }
            remove_if_present(&layout.marker(&label)).context("removing the public marker")?;
            remove_if_present(&layout.upstream_link(&label))
                .context("removing the upstream link")?;
            remove_if_present(&layout.route(&label)).context("removing the route file")?;
            Ok(true)
        })
        .await?;
        info!(released, "route released");
        Ok(())
    }

    /// True when the route file for this tenant's label exists and is this tenant's.
    pub fn route_exists(&self, spec: &TenantSpec) -> bool {
        let layout = Layout::new(&self.cfg.runtime_dir);
        matches!(
            owner(&layout, &spec.names.label, spec.tenant_id()),
            Ok(RouteOwner::This)
        )
    }

    /// Caddy's local root CA certificate (PEM), which HTTPS clients of the public listener
    /// must trust: it is deliberately not installed in the system trust store.
    pub async fn root_certificate_pem(&self) -> StepResult<String> {
        #[derive(Deserialize)]
        struct CaInfo {
            root_certificate: String,
        }
        let ca: CaInfo = self
            .http
            .get(self.admin_url("/pki/ca/local"))
            .send()
            .await
            .context("asking Caddy's admin API for its local CA")?
            .error_for_status()?
            .json()
            .await
            .context("parsing Caddy's local CA")?;
        Ok(ca.root_certificate)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.caddy_admin_url.trim_end_matches('/'))
    }

    /// `host:port` of the admin URL: the admin API must keep listening where we reach it.
    fn admin_listen(&self) -> String {
        match reqwest::Url::parse(&self.cfg.caddy_admin_url) {
            Ok(url) => match (url.host_str(), url.port_or_known_default()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                _ => self.cfg.caddy_admin_url.clone(),
            },
            Err(_) => self.cfg.caddy_admin_url.clone(),
        }
    }
}

fn route_for(layout: &Layout, spec: &TenantSpec) -> RouteFile {
    RouteFile {
        tenant_id: spec.tenant_id(),
        host: spec.names.host.clone(),
        route_id: spec.names.route_id.clone(),
        upstream: layout.workload_socket(spec.tenant_id()),
    }
}

fn route_taken(host: &str) -> StepError {
    // The other tenant is not named: this error reaches this tenant's audit feed.
    StepError::permanent(
        "RouteTaken",
        format!("the edge route for {host} belongs to another tenant"),
    )
}

/// Reads whose route the label carries.
fn owner(layout: &Layout, label: &str, tenant_id: Uuid) -> StepResult<RouteOwner> {
    let bytes = match std::fs::read(layout.route(label)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RouteOwner::Nobody),
        Err(e) => {
            return Err(StepError::Transient(
                anyhow!(e).context("reading the route file"),
            ));
        }
    };
    Ok(match serde_json::from_slice::<RouteFile>(&bytes) {
        Ok(route) if route.tenant_id == tenant_id => RouteOwner::This,
        Ok(_) => RouteOwner::Another,
        Err(e) => RouteOwner::Unreadable(e.to_string()),
    })
}

/// Makes the route file and upstream symlink say what `wanted` says; returns whether the
/// route was already this tenant's.
fn claim_route(layout: &Layout, label: &str, wanted: &RouteFile) -> StepResult<bool> {
    for dir in [&layout.routes, &layout.public, &layout.upstreams] {
        fs_err(
            std::fs::create_dir_all(dir),
            "creating the edge's runtime dirs",
        )?;
    }
    let path = layout.route(label);
    let content = route_json(wanted);

    let adopted = match owner(layout, label, wanted.tenant_id)? {
        RouteOwner::This => {
            // Ours, perhaps from an earlier configuration: bring it up to date.
            let current = std::fs::read(&path).unwrap_or_default();
            if current != content {
                write_replacing(&path, &content).context("updating the route file")?;
            }
            true
        }
        RouteOwner::Another => return Err(route_taken(&wanted.host)),
        RouteOwner::Unreadable(why) => {
            warn!(error = %why, "unreadable route file at this label");
            return Err(StepError::permanent(
                "RouteTaken",
                format!(
                    "the edge route file for {} is not one this platform wrote; remove {} if it is stale",
                    wanted.host,
                    path.display()
                ),
            ));
        }
        RouteOwner::Nobody => match create_exclusive(&path, &content) {
            Ok(()) => false,
            // Someone created it between our read and our link: decide again on its content.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                match owner(layout, label, wanted.tenant_id)? {
                    RouteOwner::This => true,
                    _ => return Err(route_taken(&wanted.host)),
                }
            }
            Err(e) => {
                return Err(StepError::Transient(
                    anyhow!(e).context("creating the route file"),
                ));
            }
        },
    };

    // The symlink is relative, so the runtime dir can be reached under another path too.
    let link = layout.upstream_link(label);
    let target = Path::new("../workloads").join(wanted.upstream.file_name().unwrap_or_default());
    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let temp = temp_sibling(&link);
        fs_err(
            std::os::unix::fs::symlink(&target, &temp),
            "creating the upstream link",
        )?;
        if let Err(e) = std::fs::rename(&temp, &link) {
            let _ = std::fs::remove_file(&temp);
            return Err(StepError::Transient(
                anyhow!(e).context("placing the upstream link"),
            ));
        }
    }
    Ok(adopted)
}

fn route_json(route: &RouteFile) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(route).expect("a route file always serialises");
    bytes.push(b'\n');
    bytes
}

/// A name next to `path` that no host label can collide with (labels never start with a dot).
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", Uuid::new_v4().simple()))
}

fn write_temp(path: &Path, content: &[u8]) -> std::io::Result<PathBuf> {
    let temp = temp_sibling(path);
    let mut file = std::fs::File::create_new(&temp)?;
    if let Err(e) = file.write_all(content).and_then(|()| file.sync_all()) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

/// Writes aside and renames over `path`: readers see the old or the new content, never half.
fn write_replacing(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let temp = write_temp(path, content)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Writes aside and hard-links into place: complete when it appears, and `AlreadyExists`
/// when another writer got there first (a rename would silently replace theirs).
fn create_exclusive(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let temp = write_temp(path, content)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    linked
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn fs_err<T>(result: std::io::Result<T>, what: &'static str) -> StepResult<T> {
    result.map_err(|e| StepError::Transient(anyhow!(e).context(what)))
}

/// Runs file-system work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> StepResult<T> + Send + 'static,
) -> StepResult<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| StepError::Transient(anyhow!(e).context("edge file work did not finish")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_domain::{TenantKey, ValidRequest};

    fn config(domain: &str, runtime_dir: &str) -> Arc<ActivitiesConfig> {
        Arc::new(ActivitiesConfig {
            control_plane_url: String::new(),
            storage_admin_url: String::new(),
            storage_host: "127.0.0.1".into(),
            storage_port: 5432,
            domain: domain.into(),
            public_https_port: 8443,
            platform_http_port: 8444,
            caddy_admin_url: "http://127.0.0.1:2019/".into(),
            runtime_dir: runtime_dir.into(),
            tenant_service_bin: "tenant-service".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 1025,
            mail_from: "platform@example.com".into(),
            console_url: Some("https://console.example.com".into()),
            secret_key: vec![7; 32],
            fail_phase: None,
            slow_phase: None,
        })
    }

    fn spec(org: &str, slug: &str, domain: &str) -> TenantSpec {
        TenantSpec {
            request: ValidRequest {
                org: org.into(),
                slug: slug.into(),
                plan: "free".into(),
                first_admin_email: "admin@example.com".into(),
                name: slug.into(),
            },
            names: TenantKey::new(org, slug).derive(domain),
            incarnation: 1,
            requested_by: "test".into(),
        }
    }

    #[test]
    fn config_keeps_the_admin_listener_and_counts_domain_labels() {
        let edge = Edge::new(config("tenants.example.com", "/tmp/tp"));
        let config = edge.desired_config();
        assert_eq!(config["admin"]["listen"], "127.0.0.1:2019");
        let text = config.to_string();
        // Three labels in the domain: the tenant's label is the fourth from the right.
        assert!(text.contains("unix//tmp/tp/upstreams/{http.request.host.labels.3}.sock"));
        assert!(!text.contains("labels.2}"));
        assert_eq!(
            config["apps"]["tls"]["automation"]["policies"][0]["subjects"][0],
            "*.tenants.example.com"
        );
        assert_eq!(
            config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"],
            false
        );
        let public = &config["apps"]["http"]["servers"]["public"];
        assert_eq!(public["listen"][0], "127.0.0.1:8443");
        assert_eq!(public["automatic_https"]["disable_redirects"], true);
        let platform = &config["apps"]["http"]["servers"]["platform"];
        assert_eq!(platform["listen"][0], "127.0.0.1:8444");
        assert_eq!(platform["automatic_https"]["disable_redirects"], true);
        assert_eq!(platform["tls_connection_policies"], json!([{}]));
    }

    #[test]
    fn public_proxying_requires_both_route_and_marker() {
        let edge = Edge::new(config("tenants.localhost", "/tmp/tp"));
        let config = edge.desired_config();
        let gates =
            &config["apps"]["http"]["servers"]["public"]["routes"][0]["handle"][0]["routes"];
        // Matcher sets in one list are alternatives, and one set holds one `file` matcher:
        // so the proxy sits behind two nested gates, the marker and then the route file.
        let outer = &gates[0]["match"];
        assert_eq!(outer.as_array().unwrap().len(), 1);
        assert_eq!(outer[0]["file"]["root"], "/tmp/tp/public");
        let inner = &gates[0]["handle"][0]["routes"][0];
        assert_eq!(inner["match"][0]["file"]["root"], "/tmp/tp/routes");
        assert_eq!(inner["handle"][1]["handler"], "reverse_proxy");
        assert_eq!(
            inner["handle"][1]["transport"]["keep_alive"]["enabled"],
            false
        );
        assert_eq!(gates[1]["handle"][0]["status_code"], 503);
        assert_eq!(gates[2]["handle"][0]["status_code"], 404);
    }

    #[test]
    fn routes_are_claimed_adopted_and_never_taken_over() {
        let dir = std::env::temp_dir().join(format!("tp-edge-unit-{}", Uuid::new_v4().simple()));
        let layout = Layout::new(&dir);
        let one = spec("c", "a-b", "tenants.localhost");
        let two = spec("b-c", "a", "tenants.localhost");
        assert_eq!(one.names.label, two.names.label);

        assert!(!claim_route(&layout, &one.names.label, &route_for(&layout, &one)).unwrap());
        assert!(claim_route(&layout, &one.names.label, &route_for(&layout, &one)).unwrap());
        let err = claim_route(&layout, &two.names.label, &route_for(&layout, &two)).unwrap_err();
        assert_eq!(err.kind(), "RouteTaken");

        let link = std::fs::read_link(layout.upstream_link(&one.names.label)).unwrap();
        assert_eq!(
            link,
            Path::new("../workloads").join(format!("{}.sock", one.tenant_id().simple()))
        );
        // Nothing but the route file and the link: no temporary files left behind.
        let entries = std::fs::read_dir(&layout.routes).unwrap().count()
            + std::fs::read_dir(&layout.upstreams).unwrap().count();
        assert_eq!(entries, 2);

        // An attempt that stopped between the route file and the link is completed.
        std::fs::remove_file(layout.upstream_link(&one.names.label)).unwrap();
        assert!(claim_route(&layout, &one.names.label, &route_for(&layout, &one)).unwrap());
        assert_eq!(
            std::fs::read_link(layout.upstream_link(&one.names.label)).unwrap(),
            link
        );

        // A file this platform did not write is never overwritten.
        std::fs::write(layout.route("stray"), "not json").unwrap();
        let stray = TenantSpec {
            names: TenantKey::new("x", "y").derive("tenants.localhost"),
            ..one
        };
        let err = claim_route(&layout, "stray", &route_for(&layout, &stray)).unwrap_err();
        assert_eq!(err.kind(), "RouteTaken");
        assert_eq!(
            std::fs::read_to_string(layout.route("stray")).unwrap(),
            "not json"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
