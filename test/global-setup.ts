// Runs once before any test file: builds dist/, which the end-to-end tests run as CLIs
// (one build here instead of one per test file racing on the same output).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  execFileSync(process.execPath, [join(import.meta.dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    { cwd: join(import.meta.dirname, '..'), stdio: 'inherit' });
}
