// Google's retry policy: what is retried, how long it waits, Retry-After, one refresh on 401.
import { describe, expect, it } from 'vitest';
import { backoffMs, classify, QuotaExceeded, withRetry } from '../../src/google/drive/retry.js';

const googleError = (status: number, reason?: string, headers: Record<string, string> = {}) =>
  Object.assign(new Error(`status ${status}`), {
    response: {
      status,
      headers,
      data: reason ? { error: { code: status, errors: [{ reason }] } } : {},
    },
  });

describe('classify', () => {
  it('retries rate limits, 429, 5xx and network errors; not other 4xx', () => {
    expect(classify(googleError(403, 'userRateLimitExceeded')).kind).toBe('retry');
    expect(classify(googleError(403, 'rateLimitExceeded')).kind).toBe('retry');
    expect(classify(googleError(429)).kind).toBe('retry');
    expect(classify(googleError(503)).kind).toBe('retry');
    expect(classify(Object.assign(new Error('reset'), { code: 'ECONNRESET' })).kind).toBe('retry');
    expect(classify(googleError(403, 'insufficientPermissions')).kind).toBe('final');
    expect(classify(googleError(404, 'notFound')).kind).toBe('final');
    expect(classify(googleError(403, 'downloadQuotaExceeded')).kind).toBe('quota');
    expect(classify(googleError(401)).kind).toBe('refresh');
  });
  it('reads Retry-After in seconds', () => {
    expect(classify(googleError(429, undefined, { 'retry-after': '7' }))).toEqual({
      kind: 'retry',
      waitMs: 7000,
    });
  });
});

describe('backoff', () => {
  const policy = { attempts: 7, baseMs: 1000, maxMs: 32_000 };
  it('doubles from the base, with up to a second of jitter, truncated at the maximum', () => {
    expect(backoffMs(1, policy, () => 0)).toBe(1000);
    expect(backoffMs(3, policy, () => 0)).toBe(4000);
    expect(backoffMs(3, policy, () => 0.999)).toBe(4999);
    expect(backoffMs(10, policy, () => 0.5)).toBe(32_000);
  });
});

describe('withRetry', () => {
  it('waits as Google says and succeeds once the errors stop', async () => {
    const waits: number[] = [];
    let n = 0;
    const r = await withRetry(
      async () => {
        if (++n <= 2)
          throw googleError(429, 'rateLimitExceeded', n === 1 ? { 'retry-after': '3' } : {});
        return 'ok';
      },
      { sleep: async (ms) => void waits.push(ms), random: () => 0 },
    );
    expect(r).toBe('ok');
    expect(waits).toEqual([3000, 2000]);
  });
  it('gives up after the attempts with the last error', async () => {
    let n = 0;
    await expect(
      withRetry(
        async () => {
          n++;
          throw googleError(500, 'backendError');
        },
        { policy: { attempts: 3, baseMs: 1, maxMs: 1 }, sleep: async () => {} },
      ),
    ).rejects.toThrow('status 500');
    expect(n).toBe(3);
  });
  it('refreshes the token once on 401, then lets a second 401 through', async () => {
    let refreshes = 0;
    await expect(
      withRetry(
        async () => {
          throw googleError(401);
        },
        { refresh: async () => void refreshes++, sleep: async () => {} },
      ),
    ).rejects.toThrow('status 401');
    expect(refreshes).toBe(1);
  });
  it('turns downloadQuotaExceeded into a deferral, without retrying', async () => {
    let n = 0;
    await expect(
      withRetry(async () => {
        n++;
        throw googleError(403, 'downloadQuotaExceeded');
      }),
    ).rejects.toBeInstanceOf(QuotaExceeded);
    expect(n).toBe(1);
  });
});
