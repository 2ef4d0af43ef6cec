//! Where nginx listens and proxies: EB's port 80 and its platform ports, translated to
//! `proxy.listen` and the app's web process; other loopback targets remembered for the
//! diagnosis of a 502. Pure.

use super::ProxyTarget;
use super::rules::Pass;
use super::tree::Directive;

pub(super) fn listen(pass: &mut Pass<'_>, directive: &Directive, translated: &mut bool) {
    let Some(address) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let on_port_80 = matches!(address.as_str(), "80" | "*:80" | "0.0.0.0:80" | "[::]:80");
    if !on_port_80 {
        return;
    }
    let ours = pass.host.listen;
    let ipv6 = address.starts_with('[');
    let same = ours.port() == 80 && ours.ip().is_unspecified() && ipv6 == ours.is_ipv6();
    if same && !ipv6 {
        *translated = true;
        return;
    }
    if same {
        return;
    }
    if *translated {
        let why = format!("this host's nginx listens on {ours} (proxy.listen) only");
        pass.remove(directive, why);
        return;
    }
    *translated = true;
    let became = pass.replace_arg(directive, 0, &ours.to_string());
    let why = format!("EB's port 80 is proxy.listen ({ours}) on this host");
    pass.translated(directive, became, why);
}

pub(super) fn proxy_pass(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(url) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let Some(target) = loopback(&url) else {
        return;
    };
    if pass.host.app_ports.contains(&target.port) {
        let became_url = format!("http://{}{}", pass.host.upstream, target.rest);
        let became = pass.replace_arg(directive, 0, &became_url);
        let why = format!(
            "port {} is where EB's platform runs the app; here the app's web process listens on $PORT and `{}` follows it across zero-downtime cutovers",
            target.port, pass.host.upstream
        );
        pass.translated(directive, became, why);
    } else {
        remember(pass, directive, target.address);
    }
}

/// An upstream whose servers are all the app gets the balancer (with the runtime switch), so
/// it follows each cutover without a reload; its `server` lines stay, as placeholders.
pub(super) fn upstream_block(pass: &mut Pass<'_>, directive: &Directive) {
    pass.balanced_upstream = false;
    let (Some(balancer), Some(block)) = (pass.host.balancer.clone(), &directive.block) else {
        return;
    };
    let servers: Vec<&Directive> = block
        .children
        .iter()
        .filter(|d| d.name.value == "server")
        .collect();
    let app = servers.iter().filter(|s| is_app_server(pass, s)).count();
    if app == 0 {
        return;
    }
    let name = directive.shown();
    if app < servers.len() {
        pass.out.warnings.push(format!(
            "{} line {}: `{name}` mixes the app with other servers, so the app's servers get this release's port written in and each cutover reloads nginx (a keep-alive client then sees one failed request per connection); give the app its own upstream",
            pass.file.path,
            directive.line()
        ));
        return;
    }
    pass.balanced_upstream = true;
    let line_end = pass.file.text[block.inner_start..]
        .find('\n')
        .map_or(pass.file.text.len(), |n| block.inner_start + n);
    let rest_of_line = pass.file.text[block.inner_start..line_end].trim();
    let inserted = match rest_of_line.is_empty() {
        true => format!(
            " {balancer} # hostmanager: added (the app's port changes at each cutover; the balancer picks it per request)"
        ),
        false => format!(" {balancer}"),
    };
    pass.editor.insert(block.inner_start, inserted);
    pass.out.translations.push(super::Translation {
        file: pass.file.path.clone(),
        line: directive.line(),
        directive: name.clone(),
        became: format!("{name} {{ {balancer} ... }}"),
        why: "its servers are where EB's platform runs the app; here the app's port changes at each cutover, and the balancer picks the serving one per request, without reloading nginx (its server lines are not used)".into(),
    });
}

fn is_app_server(pass: &Pass<'_>, server: &Directive) -> bool {
    server
        .args
        .first()
        .and_then(|a| loopback(&format!("http://{}", a.value)))
        .is_some_and(|t| pass.host.app_ports.contains(&t.port) && t.rest.is_empty())
}

pub(super) fn upstream_server(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(address) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let Some(target) = loopback(&format!("http://{address}")) else {
        return;
    };
    if pass.host.app_ports.contains(&target.port) && target.rest.is_empty() {
        let endpoint = pass.host.app_endpoint.clone();
        let became = pass.replace_arg(directive, 0, &endpoint);
        let why = format!(
            "port {} is where EB's platform runs the app; here the app's web process listens on $PORT ({endpoint} for this release)",
            target.port
        );
        pass.translated(directive, became, why);
    } else {
        remember(pass, directive, target.address);
    }
}

/// A loopback target that is not the app: the likely cause when nginx answers 502.
fn remember(pass: &mut Pass<'_>, directive: &Directive, address: String) {
    pass.out.targets.push(ProxyTarget {
        file: pass.file.path.clone(),
        line: directive.line(),
        address,
    });
}

struct Loopback {
    address: String,
    port: u16,
    /// The URI part and anything after the port.
    rest: String,
}

/// `http://127.0.0.1:8080/x` (or localhost, [::1]); `None` for anything else.
fn loopback(url: &str) -> Option<Loopback> {
    let after = url.strip_prefix("http://")?;
    let authority_end = after.find(['/', '$', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, port.parse().ok()?),
        _ => (authority, 80),
    };
    let is_loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    is_loopback.then(|| Loopback {
        address: format!("{host}:{port}"),
        port,
        rest: rest.to_string(),
    })
}

/// `http://nodejs` or `http://nodejs/x` → `nodejs`: a name without a port or a dot.
pub(super) fn upstream_name(url: &str) -> Option<String> {
    let after = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = after.find(['/', '$', '?']).unwrap_or(after.len());
    let name = &after[..end];
    let plain = !name.is_empty() && !name.contains([':', '.', '[']);
    plain.then(|| name.to_string())
}
