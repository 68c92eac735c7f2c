/**
 * The policy agentgate runs without `--config` and without `./agentgate.yaml`:
 * record everything, block the addresses an agent should never reach.
 *
 * @module
 */

/** Name used in messages and rule sources for the embedded policy. */
export const DEFAULT_POLICY_NAME = "<embedded default>";

/** The embedded default policy, as YAML (what `agentgate check` would see). */
export const DEFAULT_POLICY_YAML =
  `# agentgate embedded default policy: audit everything, deny cloud metadata
# and link-local addresses. Write your own agentgate.yaml to change it.
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
