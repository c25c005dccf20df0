//! Sandbox networking: a network namespace per sandbox, veth + nftables NAT when internet is on.
