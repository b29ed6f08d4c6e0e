use rpc_core::rpc_service;

pub trait Named {
    fn label(&self) -> String;
}

/// A service with a local supertrait.
///
/// Second paragraph.
#[rpc_service]
pub(crate) trait Greeter: Named {
    /// Says hello.
    async fn hello(&self, name: String) -> String;
}

struct English;

impl Named for English {
    fn label(&self) -> String {
        "en".to_owned()
    }
}

impl Greeter for English {
    async fn hello(&self, name: String) -> String {
        format!("hello {name} ({})", self.label())
    }
}

fn main() {
    let server = GreeterServer::new(English);
    assert_eq!(server.get_ref().label(), "en");
    assert_eq!(GREETER_DESCRIPTOR.docs, "A service with a local supertrait.\n\nSecond paragraph.");
    assert_eq!(GREETER_DESCRIPTOR.methods[0].docs, "Says hello.");
}
