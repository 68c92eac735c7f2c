/**
 * US dollar amounts as every part of agentgate prints them (denial reasons,
 * reports, the dashboard): cents, more decimals only where they tell amounts
 * apart, and never a sub-cent amount shown as `$0.` or `$0.00`.
 *
 * @module
 */

/**
 * Dollars with 2 to 4 decimals (trailing zeros trimmed down to cents); an
 * amount below $0.001 shows 2 significant digits.
 *
 * Kept free of imports and TypeScript-only syntax in its body: the dashboard
 * page embeds its source (`formatUsd.toString()`), so the browser prints
 * exactly what the server does.
 *
 * @example
 * formatUsd(5) // "$5.00"
 * formatUsd(0.004) // "$0.004"
 * formatUsd(0.013638) // "$0.0136"
 * formatUsd(0.00001) // "$0.000010"
 */
export function formatUsd(x: number): string {
  if (!Number.isFinite(x)) return "$" + String(x);
  const sign = x < 0 ? "-" : "";
  const a = Math.abs(x);
  // Decimals that show two significant digits.
  const digits = a === 0 ? 0 : 1 - Math.floor(Math.log10(a));
  const s = digits <= 4
    ? a.toFixed(4).replace(/0{1,2}$/, "")
    // Below $0.001: two significant digits, in plain decimals (never 1e-7), so
    // $0.000060 and $0.000050 stay apart.
    : a.toFixed(Math.min(20, digits));
  return sign + "$" + s;
}
