//! The built-in held-out text for export quality checks: short threat-intelligence
//! paragraphs written for ctiforge (not taken from any training set), so an export can be
//! scored without extra input. Pass your own held-out text for a more telling number.

/// Built-in quality sample, one paragraph per entry.
pub const BUILTIN_SAMPLE: [&str; 6] = [
    "The intrusion began with a spearphishing email carrying a macro-enabled document. \
     Once opened, the macro launched PowerShell to download a second-stage loader from a \
     recently registered domain and scheduled a task to keep it running after reboots.",
    "Analysts observed the operators dumping credentials from LSASS memory, then moving \
     laterally over SMB with the stolen administrator hashes before staging archives of \
     engineering documents on a file server.",
    "The ransomware deletes volume shadow copies, stops backup services and encrypts files \
     with a per-victim key. A ransom note in every folder points victims to a negotiation \
     portal reachable only over Tor.",
    "Command-and-control traffic was tunnelled over HTTPS to a content delivery network, \
     with beacons every sixty seconds plus random jitter and a user agent copied from a \
     common browser.",
    "Defenders should block the listed IP addresses, hunt for the file hashes in endpoint \
     telemetry, and review authentication logs for logins from unusual countries during \
     the reported time window.",
    "The group exploited a public-facing VPN appliance before the vendor released a patch, \
     deployed a web shell for persistence, and exfiltrated mailbox contents to cloud \
     storage using a legitimate synchronisation tool.",
];
