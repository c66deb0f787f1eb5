//! The rule engine's idea of which event types the sensor reports matches the sensor: a syscall
//! missing from `SENSOR_EVENT_TYPES` would make every rule check on it fold to false.

use brainbox_ebpf_common::Sc;
use brainbox_rules::{Capabilities, EventType};

#[test]
fn every_sensor_syscall_is_a_known_event_type_the_engine_expects() {
    let caps = Capabilities::default();
    for sc in Sc::ALL {
        let name = sc.name();
        let t = EventType::from_name(name).unwrap_or_else(|| {
            panic!("sensor syscall `{name}` is not in brainbox_rules::event::EVENT_TYPES")
        });
        assert!(
            caps.event_types.contains(t),
            "sensor syscall `{name}` is missing from brainbox_rules::compile::SENSOR_EVENT_TYPES"
        );
    }
    for exec in ["execve", "execveat"] {
        assert!(caps
            .event_types
            .contains(EventType::from_name(exec).unwrap()));
    }
}
