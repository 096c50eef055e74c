// Runs in every test worker before its tests load. The real-WebGPU tests run on SwiftShader
// (Chromium's software Vulkan driver) when the machine has no GPU of its own and SwiftShader
// is installed (`apt-get install -y chromium libvulkan1`, as .ci/run does). Only the tests
// do this: the CLI and the library never pick SwiftShader for a user (a real GPU must win).
// Child processes the tests start (the CLIs) inherit the environment.

import { hardwareAdapterConfigured, swiftShaderInstalled, useSwiftShader } from '../src/tensor/backends/gpu/swiftshader.js';

if (!hardwareAdapterConfigured() && swiftShaderInstalled()) useSwiftShader();

// The Hugging Face cache, token and hub of the machine are never the tests': each worker gets an
// empty cache, no token, and an endpoint where nothing listens (a test that means to reach a hub
// starts its own on 127.0.0.1 and says so).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
for (const k of ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'XDG_CACHE_HOME']) delete process.env[k];
const hfHome = mkdtempSync(join(tmpdir(), 'tapegrad-hf-home-'));
process.env['HF_HOME'] = hfHome;
process.on('exit', () => rmSync(hfHome, { recursive: true, force: true }));
process.env['HF_ENDPOINT'] = 'http://127.0.0.1:9';
