//! `SwapEnvironmentCNAMEs`: the load balancer's host names of two environments exchanged.

use crate::fleet::App;
use crate::fleet::reports::controller_event;
use crate::http::response::Failure;
use crate::model::*;
use crate::ops::environment;
use crate::store::Store;

/// `SwapEnvironmentCNAMEs`: each environment takes the other's host name in the load
/// balancer's map (one statement in the store; the map is changed at runtime, no reload).
pub async fn swap_cnames<S: Store>(
    app: &App<S>,
    source: &str,
    destination: &str,
) -> Result<(Environment, Environment), Failure> {
    let Some(lb) = &app.lb else {
        return Err(Failure::bad_request(
            "SwapEnvironmentCNAMEs: this controller has no load balancer ([load_balancer] in its config), so its environments have no URL to swap",
        ));
    };
    if source == destination {
        return Err(Failure::bad_request(
            "SwapEnvironmentCNAMEs: the source and destination environments are the same",
        ));
    }
    let first = environment(app, source).await?;
    let second = environment(app, destination).await?;
    let domain = &lb.config.domain;
    let (first_cname, second_cname) = (
        crate::lb::render::cname(&first, domain),
        crate::lb::render::cname(&second, domain),
    );
    app.store
        .set_cnames((source, &second_cname), (destination, &first_cname))
        .await?;
    let message =
        format!("Completed swapping CNAMEs for environments '{source}' and '{destination}'.");
    for name in [source, destination] {
        app.store
            .append_events(&[controller_event(
                name,
                None,
                EventSeverity::Info,
                message.clone(),
            )])
            .await?;
    }
    app.refresh().await?;
    lb.wake.notify_one();
    Ok((
        environment(app, source).await?,
        environment(app, destination).await?,
    ))
}
