import { defineConfig } from 'vitest/config';

// Three tiers (DESIGN.md). first-run runs alone and first: it runs the README's `npm start`,
// which rebuilds app/dist. Unit tests swap the adapters and need nothing running; integration
// tests talk to the real services that scripts/test-services.sh starts and to the built daemon.
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
    ],
  },
});
