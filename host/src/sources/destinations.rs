//! The destinations' compiled routes, which the ingest path matches each new event against to
//! decide where it is delivered.

use crate::delivery::routes::RoutePatterns;
use crate::model::events::NormalizedEvent;

/// A destination's name and compiled routes.
pub struct DestinationRoutes {
    pub name: String,
    pub patterns: RoutePatterns,
}

/// The compiled routes of each destination; one whose stored routes do not compile is
/// skipped (and logged), since the API and the config refuse such routes.
pub fn destination_routes(
    destinations: Vec<crate::delivery::attempt::Destination>,
) -> Vec<DestinationRoutes> {
    destinations
        .into_iter()
        .filter_map(|destination| match RoutePatterns::new(&destination.routes) {
            Ok(patterns) => Some(DestinationRoutes {
                name: destination.name,
                patterns,
            }),
            Err(error) => {
                tracing::warn!(destination = %destination.name, "skipping invalid routes: {error:#}");
                None
            }
        })
        .collect()
}

/// Pairs each event with the names of the destinations whose routes match it.
pub fn route_events(
    destinations: &[DestinationRoutes],
    events: Vec<NormalizedEvent>,
) -> Vec<(NormalizedEvent, Vec<String>)> {
    events
        .into_iter()
        .map(|event| {
            let matching = destinations
                .iter()
                .filter(|destination| destination.patterns.matches_any(&event.route_keys))
                .map(|destination| destination.name.clone())
                .collect();
            (event, matching)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(name: &str, patterns: &[&str]) -> DestinationRoutes {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        DestinationRoutes {
            name: name.to_owned(),
            patterns: RoutePatterns::new(&patterns).unwrap(),
        }
    }

    fn event(route_key: &str) -> NormalizedEvent {
        NormalizedEvent {
            id: route_key.to_owned(),
            source: "test".to_owned(),
            event_type: route_key.to_owned(),
            subject: None,
            time: "2026-01-01T00:00:00Z".to_owned(),
            data_json: "{}".to_owned(),
            route_keys: vec![route_key.to_owned()],
        }
    }

    #[test]
    fn each_event_goes_to_the_destinations_whose_routes_match_it_in_their_order() {
        let destinations = [
            destination("all", &["*"]),
            destination("pushes", &["github.push"]),
            destination("none", &[]),
        ];
        let routed = route_events(
            &destinations,
            vec![event("github.push"), event("github.issues.opened")],
        );
        let names: Vec<(&str, Vec<&str>)> = routed
            .iter()
            .map(|(event, names)| {
                (
                    event.id.as_str(),
                    names.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("github.push", vec!["all", "pushes"]),
                ("github.issues.opened", vec!["all"]),
            ]
        );
    }
}
