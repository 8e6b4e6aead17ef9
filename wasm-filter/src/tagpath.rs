//! Pod, namespace and container from the tail path carried in the tag.
//!
//! `tail` with `Tag kube.*` turns `/var/log/containers/web-5d8f_shop_app-0123….log` into the
//! tag `kube.var.log.containers.web-5d8f_shop_app-0123….log` (slashes become dots). Both the
//! dotted and the slashed spellings are accepted, for both kubelet layouts:
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`
//! - `/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart>.log`
//!
//! Pod names may contain dots (they are DNS subdomains) but never `_`, which is why the
//! underscores, not the dots, delimit the fields.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FromPath {
    pub pod_name: String,
    pub namespace_name: String,
    pub container_name: String,
    pub pod_id: Option<String>,
    pub docker_id: Option<String>,
}

pub fn parse(tag: &str) -> Option<FromPath> {
    for (marker, layout) in [
        ("var.log.containers.", Layout::Containers),
        ("var/log/containers/", Layout::Containers),
        ("var.log.pods.", Layout::Pods),
        ("var/log/pods/", Layout::Pods),
    ] {
        if let Some(at) = tag.find(marker) {
            let rest = &tag[at + marker.len()..];
            return match layout {
                Layout::Containers => containers(rest),
                Layout::Pods => pods(rest),
            };
        }
    }
    None
}

enum Layout {
    Containers,
    Pods,
}

/// `<pod>_<namespace>_<container>-<64 hex>.log`
fn containers(rest: &str) -> Option<FromPath> {
    let rest = rest.strip_suffix(".log").unwrap_or(rest);
    let mut parts = rest.splitn(3, '_');
    let (pod, namespace, container_and_id) = (parts.next()?, parts.next()?, parts.next()?);
    let (container, id) = container_and_id.rsplit_once('-')?;
    let id_ok = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if pod.is_empty() || namespace.is_empty() || container.is_empty() || !id_ok {
        return None;
    }
    Some(FromPath {
        pod_name: pod.to_owned(),
        namespace_name: namespace.to_owned(),
        container_name: container.to_owned(),
        pod_id: None,
        docker_id: Some(id.to_owned()),
    })
}

/// `<namespace>_<pod>_<uid>` then `/<container>/<n>.log` (or dots).
fn pods(rest: &str) -> Option<FromPath> {
    let mut parts = rest.splitn(3, '_');
    let (namespace, pod, tail) = (parts.next()?, parts.next()?, parts.next()?);
    // A pod uid is a 36-character UUID; what follows is the container directory.
    if tail.len() < 38 {
        return None;
    }
    // `get`, not slicing: a tag is whatever the path was, and byte 36 may fall inside a
    // multibyte character.
    let (uid, after) = (tail.get(..36)?, tail.get(36..)?);
    let uid_ok = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let container = after.get(1..)?.split(['/', '.']).next()?;
    if namespace.is_empty() || pod.is_empty() || container.is_empty() || !uid_ok {
        return None;
    }
    Some(FromPath {
        pod_name: pod.to_owned(),
        namespace_name: namespace.to_owned(),
        container_name: container.to_owned(),
        pod_id: Some(uid.to_owned()),
        docker_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn containers_layout_dotted_and_slashed() {
        let expected = FromPath {
            pod_name: "report-28190012.x7k2p".into(),
            namespace_name: "batch".into(),
            container_name: "report-main".into(),
            pod_id: None,
            docker_id: Some(ID.into()),
        };
        assert_eq!(
            parse(&format!(
                "kube.var.log.containers.report-28190012.x7k2p_batch_report-main-{ID}.log"
            )),
            Some(expected.clone())
        );
        assert_eq!(
            parse(&format!(
                "/var/log/containers/report-28190012.x7k2p_batch_report-main-{ID}.log"
            )),
            Some(expected)
        );
    }

    #[test]
    fn pods_layout() {
        let uid = "5f1c2b1e-8d7a-4c2b-9f00-123456789abc";
        let p = parse(&format!(
            "kube.var.log.pods.shop_web-7c9d.abc_{uid}.nginx.0.log"
        ))
        .unwrap();
        assert_eq!(
            (
                p.namespace_name.as_str(),
                p.pod_name.as_str(),
                p.container_name.as_str()
            ),
            ("shop", "web-7c9d.abc", "nginx")
        );
        assert_eq!(p.pod_id.as_deref(), Some(uid));
        let q = parse(&format!("/var/log/pods/shop_web_{uid}/nginx/3.log")).unwrap();
        assert_eq!(q.container_name, "nginx");
    }

    #[test]
    fn other_tags_give_nothing() {
        assert_eq!(parse("app.firelens"), None);
        assert_eq!(parse("kube.var.log.containers.bad.log"), None);
        assert_eq!(
            parse(&format!("kube.var.log.containers.a_b_c-{}.log", &ID[..10])),
            None
        );
    }

    #[test]
    fn multibyte_characters_anywhere_in_the_tag_never_panic() {
        for tag in [
            format!("var.log.pods.ns_pod_{}é/c/0.log", "a".repeat(35)),
            format!("var.log.pods.ns_pod_{}ééé", "a".repeat(36)),
            "var.log.pods.ns_pod_ééééééééééééééééééééééééééééééééééééééé".to_string(),
            "var.log.containers.é_é_é-é.log".to_string(),
        ] {
            let _ = parse(&tag);
        }
        assert!(parse(&format!("var.log.pods.ns_pod_{}é/c/0.log", "a".repeat(35))).is_none());
    }
}
