/**
 * A finding as agentgate records it: what was found, where, in which
 * direction, and what was done about it. The sample is always masked; the
 * secret itself never leaves the scanner.
 *
 * @module
 */

/** One DLP finding as stored with a request; `sample` is always masked. */
export interface RecordedFinding {
  detector: string;
  direction: "request" | "response";
  /** `url`, `header:<name>`, `body`. */
  location: string;
  /** Masked sample such as `AKIA…WXYZ`. */
  sample: string;
  /** `warn`, `redact`, `block`. */
  action: string;
}
