// The backends available without asking: the js reference (always), and wasm (registered by
// importing its module; its factory explains the fallback where SIMD is missing). The gpu
// backend registers itself in initGpuBackend, so CPU users never load gpu.js.

import { registerBackend } from '../backend.js';
import { JsBackend } from './js.js';
import './wasm/index.js';

registerBackend('js', () => new JsBackend());
