//! Finding a service by name in a map of the few services one peer serves.
//!
//! Every call looks its service up twice on the client (the server's credit
//! when it is sent, again when its reply returns the credit) and once on the
//! server (which stream runs it). These maps are keyed by names a peer sent,
//! so they keep SipHash against chosen collisions; but hashing a name costs
//! more than comparing it with the one or two a server usually serves, so
//! a small map is searched by comparison instead.

use std::collections::HashMap;

use rpc_core::Name;

/// Up to this many entries a map is searched by comparing names.
const COMPARE_UP_TO: usize = 4;

/// The entry for `service` in `map`.
pub(crate) fn get<'a, V>(map: &'a HashMap<Name, V>, service: &str) -> Option<&'a V> {
    if map.len() > COMPARE_UP_TO {
        return map.get(service);
    }
    map.iter()
        .find(|(name, _)| name.as_str() == service)
        .map(|(_, value)| value)
}

/// The entry for `service` in `map`, to change.
pub(crate) fn get_mut<'a, V>(map: &'a mut HashMap<Name, V>, service: &str) -> Option<&'a mut V> {
    if map.len() > COMPARE_UP_TO {
        return map.get_mut(service);
    }
    map.iter_mut()
        .find(|(name, _)| name.as_str() == service)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(count: usize) -> HashMap<Name, usize> {
        (0..count)
            .map(|index| (Name::from(format!("service-{index}")), index))
            .collect()
    }

    #[test]
    fn small_and_large_maps_find_the_same() {
        for count in [0, 1, 2, COMPARE_UP_TO, COMPARE_UP_TO + 1, 50] {
            let mut services = map(count);
            for index in 0..count {
                let name = format!("service-{index}");
                assert_eq!(get(&services, &name), Some(&index));
                *get_mut(&mut services, &name).unwrap() += 1;
                assert_eq!(get(&services, &name), Some(&(index + 1)));
            }
            assert_eq!(get(&services, "absent"), None);
            assert_eq!(get_mut(&mut services, "absent"), None);
        }
    }
}
