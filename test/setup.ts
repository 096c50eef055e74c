// Runs in every test worker before its tests load. The real-WebGPU tests run on SwiftShader
// (Chromium's software Vulkan driver) when the machine has no GPU of its own and SwiftShader
// is installed (`apt-get install -y chromium libvulkan1`, as .ci/run does). Only the tests
// do this: the CLI and the library never pick SwiftShader for a user (a real GPU must win).
// Child processes the tests start (the CLIs) inherit the environment.

import { hardwareAdapterConfigured, swiftShaderInstalled, useSwiftShader } from '../src/tensor/backends/gpu/swiftshader.js';

if (!hardwareAdapterConfigured() && swiftShaderInstalled()) useSwiftShader();
