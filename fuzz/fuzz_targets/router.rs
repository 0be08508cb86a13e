//! The router and query parsing: any path and query string is matched or
//! refused without a panic, and a matched route's repository name is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_guest::names::is_valid_name;
use wharf_guest::paging::{MAX_ENTRIES, Paging};
use wharf_guest::query::{Query, percent_decode};
use wharf_guest::routes::{Route, Shape};

fuzz_target!(|input: (&str, &str)| {
    let (path, query) = input;
    if let Ok(route) = Route::parse(path) {
        match route.shape {
            Shape::Base | Shape::Catalog => assert!(route.name.is_empty()),
            _ => assert!(is_valid_name(&route.name), "{path:?} -> {route:?}"),
        }
    }
    let parsed = Query::parse(Some(query));
    if let Ok(paging) = Paging::from_query(&parsed) {
        assert!(paging.n <= MAX_ENTRIES);
    }
    // Decoding never grows a string beyond its UTF-8-replaced length.
    assert!(percent_decode(query).len() <= query.len() * 3);
});
