//! `[[route]]`: which paths and query parameters ask what of visitors.

use toml::Spanned;

use super::raw;
use super::validate::Validator;
use super::ConfigError;
use crate::gate::{Access, RouteSpec, RouteTable};

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        raw: Vec<Spanned<raw::RawRoute>>,
    ) -> Result<Vec<RouteSpec>, ConfigError> {
        let mut routes = Vec::with_capacity(raw.len());
        // Where each route, and its prefix, query and access, were written.
        let mut places = Vec::with_capacity(raw.len());
        for (index, route) in raw.into_iter().enumerate() {
            let span = route.span();
            let route = route.into_inner();
            let access_span = route.access.as_ref().map(Spanned::span);
            let access = match (route.access, route.gated) {
                (Some(access), None) => access.into_inner().into(),
                (None, Some(true)) => Access::Session,
                (None, Some(false)) => Access::Public,
                (Some(_), Some(_)) => {
                    return Err(self.invalid(
                        span,
                        format!("route[{index}]"),
                        "set access or gated, not both",
                    ));
                }
                (None, None) => {
                    return Err(self.invalid(
                        span,
                        format!("route[{index}]"),
                        "needs access = \"public\", \"session\" or \"token\"",
                    ));
                }
            };
            if let Some(query) = route.query.as_ref().filter(|q| q.get_ref().is_empty()) {
                return Err(self.invalid(
                    query.span(),
                    format!("route[{index}].query"),
                    "names no parameter: give at least one, or leave query out",
                ));
            }
            let token = match (access, route.token) {
                (Access::Token, Some(token)) => Some(self.route_token(index, token)?),
                (Access::Token, None) => {
                    return Err(self.invalid(
                        span,
                        format!("route[{index}].token"),
                        "access = \"token\" needs a [route.token] table with the key",
                    ));
                }
                (_, Some(token)) => {
                    return Err(self.invalid(
                        token.span(),
                        format!("route[{index}].token"),
                        "only applies with access = \"token\"",
                    ));
                }
                (_, None) => None,
            };
            places.push((
                span,
                route.prefix.as_ref().map(Spanned::span),
                route.query.as_ref().map(Spanned::span),
                access_span,
            ));
            routes.push(RouteSpec {
                prefix: route.prefix.map(Spanned::into_inner),
                query: route.query.map(Spanned::into_inner).unwrap_or_default(),
                access,
                token,
            });
        }
        // Compiling checks every route; the runtime compiles them again.
        RouteTable::new(&routes).map_err(|err| {
            let span = places
                .get(err.index)
                .map_or(0..0, |(route, prefix, query, access)| {
                    let key = match err.field {
                        "query" => query,
                        "access" => access,
                        _ => prefix,
                    };
                    key.clone().unwrap_or_else(|| route.clone())
                });
            let key = format!("route[{}].{}", err.index, err.field);
            self.invalid(span, key, err.message)
        })?;
        Ok(routes)
    }
}
