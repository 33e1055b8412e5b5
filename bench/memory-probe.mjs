// Loaded into the daemon by bench/memory.mjs (`node --import bench/memory-probe.mjs ...`): samples
// what the process holds, as Node and V8 see it, every 100 ms, and keeps each figure's peak.
// On SIGUSR2 (sent by the benchmark at the end of a phase) it writes the latest sample and the
// peaks since the previous SIGUSR2 to $BACKUPD_MEMORY_PROBE as JSON, then starts new peaks.
// It does nothing else: the daemon runs as it always does.
import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';

const out = process.env.BACKUPD_MEMORY_PROBE;
if (out) {
  const sample = () => {
    const m = process.memoryUsage();
    const h = v8.getHeapStatistics();
    const spaces = Object.fromEntries(
      v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]),
    );
    return {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      mallocedMemory: h.malloced_memory,
      newSpace: spaces.new_space ?? 0,
      oldSpace: spaces.old_space ?? 0,
      codeSpace: spaces.code_space ?? 0,
      largeObjectSpace: spaces.large_object_space ?? 0,
    };
  };
  let last = sample();
  let peak = { ...last };
  const timer = setInterval(() => {
    last = sample();
    for (const k of Object.keys(last)) peak[k] = Math.max(peak[k], last[k]);
  }, 100);
  timer.unref();
  process.on('SIGUSR2', () => {
    last = sample();
    writeFileSync(out, JSON.stringify({ last, peak }));
    peak = { ...last };
  });
}
