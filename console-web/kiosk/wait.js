// What the waiting screen says about the wait, from a `queue.update` or a `state.sync` call: the
// interval in whole minutes when the server sends one (`estimated_wait_low_s`, `…_high_s`: low
// rounded down, high rounded up), else the single estimate, else "unknown". Pure, so the rule can
// be checked without a page.

/**
 * The catalogue key and its placeholders for the wait.
 * @param {{ estimated_wait_s?: number | null, estimated_wait_low_s?: number | null,
 *   estimated_wait_high_s?: number | null }} [update]
 * @returns {[string, Record<string, number>]}
 */
export function waitMessage({ estimated_wait_s: wait, estimated_wait_low_s: low, estimated_wait_high_s: high } = {}) {
  if (wait === null || wait === undefined) return ['waiting.estimate_unknown', {}];
  if (Number.isFinite(low) && Number.isFinite(high) && low <= high) {
    const from = Math.floor(low / 60);
    const to = Math.ceil(high / 60);
    if (to <= 1) return ['waiting.estimate_soon', {}];
    if (from === 0) return ['waiting.estimate_up_to', { high: to }];
    if (from === to) return ['waiting.estimate', { minutes: to }];
    return ['waiting.estimate_range', { low: from, high: to }];
  }
  if (wait < 60) return ['waiting.estimate_soon', {}];
  return ['waiting.estimate', { minutes: Math.round(wait / 60) }];
}
