import { defineConfig } from 'vitest/config';

// Four tiers (DESIGN.md). first-run runs alone and first: it runs the README's `npm start`,
// which rebuilds app/dist. Unit tests swap the adapters and need nothing running; integration
// tests talk to the real services that scripts/test-services.sh starts and to the built daemon.
// The appliance tier runs last and alone: it builds the amd64 image (or reuses it) and boots it
// in QEMU in software, which takes minutes and both cores.
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'first-run',
          include: ['test/first-run/**/*.test.ts'],
          testTimeout: 360_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'appliance',
          include: ['test/appliance/**/*.test.ts'],
          testTimeout: 600_000,
          hookTimeout: 3_600_000,
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
