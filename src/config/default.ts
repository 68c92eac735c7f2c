/**
 * The policy agentgate runs without `--config` and without `./agentgate.yaml`:
 * record everything, block the addresses an agent should never reach (the
 * rules by name, the built-in address guard by resolved address).
 *
 * @module
 */

/** Name used in messages and rule sources for the embedded policy. */
export const DEFAULT_POLICY_NAME = "<embedded default>";

/** The embedded default policy, as YAML (what `agentgate check` would see). */
export const DEFAULT_POLICY_YAML =
  `# agentgate embedded default policy: audit everything; never reach cloud
# metadata, this machine or private networks. Write your own agentgate.yaml to
# change it.
#
# Addresses are checked after a name is resolved, on every request and tunnel:
# agentgate's built-in address guard denies cloud metadata, loopback,
# link-local, private and unique-local ranges, CGNAT, unspecified, multicast
# and broadcast addresses in every spelling (decimal, hex, octal, IPv4-mapped,
# NAT64, ...), whatever a name resolves to, unless a rule names the address or
# range, or says allow_private: true. The rules below deny the metadata
# endpoints by name too, before any DNS query.
version: 1
proxy:
  listen: 127.0.0.1:4100
  dashboard: true
mode: enforce
default: log
rules:
  - name: cloud-metadata
    match:
      - 169.254.169.254        # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
      - 169.254.170.2          # AWS ECS task metadata
      - 169.254.170.23         # AWS EKS Pod Identity
      - fd00:ec2::254          # AWS IMDS over IPv6
      - 100.100.100.200        # Alibaba Cloud
      - metadata.google.internal
      - metadata.goog
      - metadata.azure.internal
    action: deny
    reason: Cloud metadata endpoints are not accessible to agents
  - name: link-local
    match: ["169.254.*", "[fe8?:*]", "[fe9?:*]", "[fea?:*]", "[feb?:*]"]
    action: deny
    reason: Link-local addresses are not accessible to agents
audit:
  retention: 30d # the database is agentgate.db in $AGENTGATE_HOME (default ~/.agentgate)
`;
