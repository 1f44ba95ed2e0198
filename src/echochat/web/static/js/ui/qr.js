// @ts-check
/**
 * A QR code encoder (ISO/IEC 18004), written for the safety-number QR code (docs/e2ee.md
 * section 7): byte mode, any error-correction level (the safety number uses M), the
 * smallest version 1-40 that fits, and the mask chosen by scoring all eight with the
 * standard penalty rules (N1-N4). Rendered as SVG. No third-party code; checked against the
 * Python package segno module by module (tests/e2e/test_keys_ui.py).
 *
 * The encoder itself is pure (no DOM): {@link encodeQr} returns the module matrix; only
 * {@link qrSvg} builds elements.
 *
 * Mask scoring follows ISO/IEC 18004:2015 7.8.3 as segno reads it: each candidate is scored
 * before the format and version information is placed (those modules, and the dark module,
 * count as light), and a finder-like 1:1:3:1:1 pattern counts when it touches the symbol's
 * edge or has four light modules on either side inside the symbol.
 */

/** @typedef {"L" | "M" | "Q" | "H"} Ecc */

/**
 * @typedef {object} QrCode
 * @property {number} version 1-40
 * @property {Ecc} ecc
 * @property {number} mask 0-7
 * @property {number} size modules per side (17 + 4 * version)
 * @property {boolean[][]} modules [row][column], true = dark
 */

// Error-correction codewords per block and number of blocks, by level and version (index 0
// unused): ISO/IEC 18004 Table 9.
const ECC_PER_BLOCK = {
  L: [0, 7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28, 28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  M: [0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26, 26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28],
  Q: [0, 13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30, 28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  H: [0, 17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28, 30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
};
const BLOCKS = {
  L: [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25],
  M: [0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49],
  Q: [0, 1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68],
  H: [0, 1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81],
};
/** The two format bits of each level. */
const ECC_BITS = { L: 1, M: 0, Q: 3, H: 2 };

/** The eight data masks: true where a data module is inverted (row i, column j). */
const MASKS = [
  (/** @type {number} */ i, /** @type {number} */ j) => (i + j) % 2 === 0,
  (/** @type {number} */ i, /** @type {number} */ _j) => i % 2 === 0,
  (/** @type {number} */ _i, /** @type {number} */ j) => j % 3 === 0,
  (/** @type {number} */ i, /** @type {number} */ j) => (i + j) % 3 === 0,
  (/** @type {number} */ i, /** @type {number} */ j) =>
    (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0,
  (/** @type {number} */ i, /** @type {number} */ j) => ((i * j) % 2) + ((i * j) % 3) === 0,
  (/** @type {number} */ i, /** @type {number} */ j) => (((i * j) % 2) + ((i * j) % 3)) % 2 === 0,
  (/** @type {number} */ i, /** @type {number} */ j) => (((i + j) % 2) + ((i * j) % 3)) % 2 === 0,
];

// --- GF(256) with the polynomial x^8 + x^4 + x^3 + x^2 + 1, and Reed-Solomon ----------------

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i += 1) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) {
      x ^= 0x11d;
    }
  }
  for (let i = 255; i < 512; i += 1) {
    EXP[i] = EXP[i - 255];
  }
}

/**
 * @param {number} a
 * @param {number} b
 */
function gfMul(a, b) {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
}

/**
 * The generator polynomial (x - a^0)(x - a^1)...(x - a^(n-1)), highest power first,
 * without its leading 1.
 * @param {number} degree
 */
function generator(degree) {
  let poly = [1];
  for (let i = 0; i < degree; i += 1) {
    const next = new Array(poly.length + 1).fill(0);
    for (let k = 0; k < poly.length; k += 1) {
      next[k] ^= poly[k];
      next[k + 1] ^= gfMul(poly[k], EXP[i]);
    }
    poly = next;
  }
  return poly.slice(1);
}

/**
 * The error-correction codewords of one block.
 * @param {number[]} data
 * @param {number} degree
 */
function reedSolomon(data, degree) {
  const gen = generator(degree);
  const rem = new Array(degree).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem[0];
    rem.shift();
    rem.push(0);
    for (let k = 0; k < degree; k += 1) {
      rem[k] ^= gfMul(gen[k], factor);
    }
  }
  return rem;
}

// --- sizes --------------------------------------------------------------------------------------

/**
 * Row/column centres of the alignment patterns of a version.
 * @param {number} version
 * @returns {number[]}
 */
export function alignmentPositions(version) {
  if (version === 1) {
    return [];
  }
  const count = Math.floor(version / 7) + 2;
  const size = 17 + 4 * version;
  const step = version === 32 ? 26 : Math.ceil((version * 4 + 4) / (count * 2 - 2)) * 2;
  const positions = [6];
  for (let pos = size - 7; positions.length < count; pos -= step) {
    positions.splice(1, 0, pos);
  }
  return positions;
}

/**
 * Modules available for data and error correction (everything but the function patterns,
 * format and version information).
 * @param {number} version
 */
function rawModules(version) {
  let modules = (16 * version + 128) * version + 64;
  if (version >= 2) {
    const count = Math.floor(version / 7) + 2;
    modules -= (25 * count - 10) * count - 55;
    if (version >= 7) {
      modules -= 36;
    }
  }
  return modules;
}

/**
 * Data codewords of a version at a level.
 * @param {number} version
 * @param {Ecc} ecc
 */
export function dataCodewords(version, ecc) {
  return Math.floor(rawModules(version) / 8) - ECC_PER_BLOCK[ecc][version] * BLOCKS[ecc][version];
}

/**
 * The smallest version whose byte mode holds `length` bytes at `ecc`, or 0 if none does.
 * @param {number} length
 * @param {Ecc} ecc
 */
export function smallestVersion(length, ecc) {
  for (let version = 1; version <= 40; version += 1) {
    if (4 + (version <= 9 ? 8 : 16) + 8 * length <= 8 * dataCodewords(version, ecc)) {
      return version;
    }
  }
  return 0;
}

// --- codewords ----------------------------------------------------------------------------------

/**
 * The final codeword sequence: byte-mode segment, terminator, padding, blocks with their
 * error correction, interleaved.
 * @param {Uint8Array} bytes
 * @param {number} version
 * @param {Ecc} ecc
 * @returns {number[]}
 */
function codewords(bytes, version, ecc) {
  const capacity = dataCodewords(version, ecc);
  /** @type {number[]} */
  const bits = [];
  const put = (/** @type {number} */ value, /** @type {number} */ count) => {
    for (let k = count - 1; k >= 0; k -= 1) {
      bits.push((value >>> k) & 1);
    }
  };
  put(0b0100, 4);
  put(bytes.length, version <= 9 ? 8 : 16);
  for (const byte of bytes) {
    put(byte, 8);
  }
  put(0, Math.min(4, capacity * 8 - bits.length));
  put(0, (8 - (bits.length % 8)) % 8);
  /** @type {number[]} */
  const data = [];
  for (let k = 0; k < bits.length; k += 8) {
    data.push(bits.slice(k, k + 8).reduce((acc, bit) => (acc << 1) | bit, 0));
  }
  for (let pad = 0xec; data.length < capacity; pad ^= 0xec ^ 0x11) {
    data.push(pad);
  }

  const blocks = BLOCKS[ecc][version];
  const eccLength = ECC_PER_BLOCK[ecc][version];
  const total = Math.floor(rawModules(version) / 8);
  const shortBlocks = blocks - (total % blocks);
  const shortData = Math.floor(total / blocks) - eccLength;
  /** @type {number[][]} */
  const dataBlocks = [];
  /** @type {number[][]} */
  const eccBlocks = [];
  for (let b = 0, at = 0; b < blocks; b += 1) {
    const length = shortData + (b < shortBlocks ? 0 : 1);
    const block = data.slice(at, at + length);
    at += length;
    dataBlocks.push(block);
    eccBlocks.push(reedSolomon(block, eccLength));
  }
  const out = [];
  for (let k = 0; k <= shortData; k += 1) {
    for (const block of dataBlocks) {
      if (k < block.length) {
        out.push(block[k]);
      }
    }
  }
  for (let k = 0; k < eccLength; k += 1) {
    for (const block of eccBlocks) {
      out.push(block[k]);
    }
  }
  return out;
}

// --- the matrix ---------------------------------------------------------------------------------

/**
 * BCH remainder of `value` for a generator of degree `degree`.
 * @param {number} value
 * @param {number} degree
 * @param {number} poly
 */
function bch(value, degree, poly) {
  let rem = value;
  for (let k = 0; k < degree; k += 1) {
    rem = (rem << 1) ^ ((rem >>> (degree - 1)) & 1 ? poly : 0);
  }
  return rem & ((1 << degree) - 1);
}

/**
 * The 15 format bits for a level and mask (BCH(15,5), masked with 0x5412).
 * @param {Ecc} ecc
 * @param {number} mask
 */
export function formatBits(ecc, mask) {
  const data = (ECC_BITS[ecc] << 3) | mask;
  return ((data << 10) | bch(data, 10, 0x537)) ^ 0x5412;
}

/**
 * The 18 version bits (BCH(18,6)), versions 7 and up.
 * @param {number} version
 */
export function versionBits(version) {
  return (version << 12) | bch(version, 12, 0x1f25);
}

class Matrix {
  /** @param {number} version */
  constructor(version) {
    this.version = version;
    this.size = 17 + 4 * version;
    /** @type {boolean[][]} */
    this.dark = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
    /** @type {boolean[][]} modules that are not data (function patterns, format, version) */
    this.reserved = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
  }

  /**
   * @param {number} row
   * @param {number} col
   * @param {boolean} dark
   */
  fixed(row, col, dark) {
    this.dark[row][col] = dark;
    this.reserved[row][col] = true;
  }

  functionPatterns() {
    const n = this.size;
    for (let k = 0; k < n; k += 1) {
      this.fixed(6, k, k % 2 === 0);
      this.fixed(k, 6, k % 2 === 0);
    }
    for (const [r0, c0] of [
      [0, 0],
      [0, n - 7],
      [n - 7, 0],
    ]) {
      for (let dr = -1; dr <= 7; dr += 1) {
        for (let dc = -1; dc <= 7; dc += 1) {
          const r = r0 + dr;
          const c = c0 + dc;
          if (r < 0 || c < 0 || r >= n || c >= n) {
            continue;
          }
          const ring = Math.max(Math.abs(dr - 3), Math.abs(dc - 3));
          this.fixed(r, c, ring !== 2 && ring !== 4);
        }
      }
    }
    const centres = alignmentPositions(this.version);
    const last = centres.length - 1;
    for (const [a, r] of centres.entries()) {
      for (const [b, c] of centres.entries()) {
        if ((a === 0 && b === 0) || (a === 0 && b === last) || (a === last && b === 0)) {
          continue; // under a finder pattern
        }
        for (let dr = -2; dr <= 2; dr += 1) {
          for (let dc = -2; dc <= 2; dc += 1) {
            this.fixed(r + dr, c + dc, Math.max(Math.abs(dr), Math.abs(dc)) !== 1);
          }
        }
      }
    }
    // Format information (both copies), the dark module and the version information are
    // reserved now and written after the mask is chosen.
    for (let k = 0; k <= 8; k += 1) {
      if (k !== 6) {
        this.fixed(8, k, false); // k = 6 is the timing pattern
        this.fixed(k, 8, false);
      }
    }
    for (let k = 0; k < 8; k += 1) {
      this.fixed(8, n - 1 - k, false);
      this.fixed(n - 1 - k, 8, false);
    }
    if (this.version >= 7) {
      for (let k = 0; k < 18; k += 1) {
        const a = n - 11 + (k % 3);
        const b = Math.floor(k / 3);
        this.fixed(a, b, false);
        this.fixed(b, a, false);
      }
    }
  }

  /**
   * Place the codewords in the zigzag order (two columns at a time, from the bottom right,
   * skipping the vertical timing pattern); remainder bits are light.
   * @param {number[]} words
   */
  place(words) {
    const n = this.size;
    let bit = 0;
    const total = words.length * 8;
    for (let right = n - 1; right >= 1; right -= 2) {
      if (right === 6) {
        right = 5;
      }
      const upward = ((right + 1) & 2) === 0;
      for (let v = 0; v < n; v += 1) {
        const row = upward ? n - 1 - v : v;
        for (let z = 0; z < 2; z += 1) {
          const col = right - z;
          if (this.reserved[row][col]) {
            continue;
          }
          const value = bit < total ? (words[bit >>> 3] >>> (7 - (bit & 7))) & 1 : 0;
          this.dark[row][col] = value === 1;
          bit += 1;
        }
      }
    }
  }

  /**
   * A copy with mask `mask` applied to the data modules.
   * @param {number} mask
   * @returns {boolean[][]}
   */
  masked(mask) {
    const flip = MASKS[mask];
    return this.dark.map((row, i) =>
      row.map((dark, j) => (this.reserved[i][j] ? dark : dark !== flip(i, j))),
    );
  }

  /**
   * Write the format information, the dark module and the version information.
   * @param {boolean[][]} modules
   * @param {Ecc} ecc
   * @param {number} mask
   */
  finish(modules, ecc, mask) {
    const n = this.size;
    const bits = formatBits(ecc, mask);
    const bitAt = (/** @type {number} */ k) => ((bits >>> k) & 1) === 1;
    for (let k = 0; k <= 5; k += 1) {
      modules[k][8] = bitAt(k);
    }
    modules[7][8] = bitAt(6);
    modules[8][8] = bitAt(7);
    modules[8][7] = bitAt(8);
    for (let k = 9; k < 15; k += 1) {
      modules[8][14 - k] = bitAt(k);
    }
    for (let k = 0; k < 8; k += 1) {
      modules[8][n - 1 - k] = bitAt(k);
    }
    for (let k = 8; k < 15; k += 1) {
      modules[n - 15 + k][8] = bitAt(k);
    }
    modules[n - 8][8] = true;
    if (this.version >= 7) {
      const vbits = versionBits(this.version);
      for (let k = 0; k < 18; k += 1) {
        const dark = ((vbits >>> k) & 1) === 1;
        const a = n - 11 + (k % 3);
        const b = Math.floor(k / 3);
        modules[a][b] = dark;
        modules[b][a] = dark;
      }
    }
    return modules;
  }
}

// --- the penalty score --------------------------------------------------------------------------

/**
 * The 1:1:3:1:1 finder-like patterns of one line, 40 points each when light on one side
 * (four modules, or the symbol's edge).
 * @param {number[]} line
 */
function finderLikes(line) {
  const n = line.length;
  const pattern = [1, 0, 1, 1, 1, 0, 1];
  const at = (/** @type {number} */ from) => {
    for (let k = from; k + 7 <= n; k += 1) {
      if (pattern.every((v, d) => line[k + d] === v)) {
        return k;
      }
    }
    return -1;
  };
  const light = (/** @type {number} */ from, /** @type {number} */ to) =>
    line.slice(Math.max(from, 0), Math.min(to, n)).every((v) => v === 0);
  let score = 0;
  for (let k = at(0); k !== -1; ) {
    if (k === 0 || k === n - 7 || light(k - 4, k) || light(k + 7, k + 11)) {
      score += 40;
      k = at(k + 7);
    } else {
      k = at(k + 4);
    }
  }
  return score;
}

/**
 * The penalty of a masked matrix (format and version areas still light): N1 runs of five or
 * more, N2 2x2 blocks, N3 finder-like patterns, N4 the balance of dark and light.
 * @param {boolean[][]} modules
 * @returns {[number, number, number, number]}
 */
export function penalty(modules) {
  const n = modules.length;
  const grid = modules.map((row) => row.map((d) => (d ? 1 : 0)));
  let n1 = 0;
  let n2 = 0;
  let n3 = 0;
  let dark = 0;
  const runs = (/** @type {number[]} */ line) => {
    let score = 0;
    let run = 1;
    for (let k = 1; k <= line.length; k += 1) {
      if (k < line.length && line[k] === line[k - 1]) {
        run += 1;
      } else {
        if (run >= 5) {
          score += run - 2;
        }
        run = 1;
      }
    }
    return score;
  };
  for (let i = 0; i < n; i += 1) {
    const row = grid[i];
    const column = grid.map((r) => r[i]);
    n1 += runs(row) + runs(column);
    n3 += finderLikes(row) + finderLikes(column);
    for (let j = 0; j < n; j += 1) {
      dark += row[j];
      if (i > 0 && j > 0) {
        const v = row[j];
        if (row[j - 1] === v && grid[i - 1][j] === v && grid[i - 1][j - 1] === v) {
          n2 += 3;
        }
      }
    }
  }
  const n4 = 10 * Math.floor(Math.abs((dark / (n * n)) * 100 - 50) / 5);
  return [n1, n2, n3, n4];
}

// --- the API ------------------------------------------------------------------------------------

/**
 * Encode `text` (UTF-8, byte mode) as a QR code.
 * @param {string | Uint8Array} text
 * @param {{ecc?: Ecc, version?: number, mask?: number}} [options] a fixed version or mask
 *   (default: the smallest version that fits, the mask with the lowest penalty)
 * @returns {QrCode}
 */
export function encodeQr(text, options = {}) {
  const ecc = options.ecc ?? "M";
  if (!(ecc in BLOCKS)) {
    throw new RangeError(`unknown error-correction level ${ecc}`);
  }
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  const fits = smallestVersion(bytes.length, ecc);
  if (fits === 0) {
    throw new RangeError("too much data for a QR code");
  }
  const version = options.version ?? fits;
  if (!Number.isInteger(version) || version < fits || version > 40) {
    throw new RangeError(`version ${version} cannot hold ${bytes.length} bytes at level ${ecc}`);
  }
  const matrix = new Matrix(version);
  matrix.functionPatterns();
  matrix.place(codewords(bytes, version, ecc));
  let mask = options.mask ?? -1;
  if (mask === -1) {
    let best = Infinity;
    for (let candidate = 0; candidate < 8; candidate += 1) {
      const score = penalty(matrix.masked(candidate)).reduce((a, b) => a + b, 0);
      if (score < best) {
        best = score;
        mask = candidate;
      }
    }
  } else if (!Number.isInteger(mask) || mask < 0 || mask > 7) {
    throw new RangeError(`mask ${mask} is not 0-7`);
  }
  const modules = matrix.finish(matrix.masked(mask), ecc, mask);
  return { version, ecc, mask, size: matrix.size, modules };
}

const SVG = "http://www.w3.org/2000/svg";

/**
 * The code as an SVG image: one path of unit squares, a light quiet zone of `quiet` modules
 * around it, scaled by CSS (crisp edges).
 * @param {QrCode} code
 * @param {{quiet?: number, label?: string}} [options]
 * @returns {SVGSVGElement}
 */
export function qrSvg(code, { quiet = 4, label = "QR code" } = {}) {
  const full = code.size + 2 * quiet;
  const svg = /** @type {SVGSVGElement} */ (document.createElementNS(SVG, "svg"));
  svg.setAttribute("viewBox", `0 0 ${full} ${full}`);
  svg.setAttribute("shape-rendering", "crispEdges");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("class", "qr");
  svg.dataset.version = String(code.version);
  svg.dataset.mask = String(code.mask);
  const background = document.createElementNS(SVG, "rect");
  background.setAttribute("width", String(full));
  background.setAttribute("height", String(full));
  background.setAttribute("fill", "#fff");
  const parts = [];
  for (let r = 0; r < code.size; r += 1) {
    for (let c = 0; c < code.size; c += 1) {
      if (code.modules[r][c]) {
        parts.push(`M${c + quiet} ${r + quiet}h1v1h-1z`);
      }
    }
  }
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", parts.join(""));
  path.setAttribute("fill", "#000");
  svg.append(background, path);
  return svg;
}

/**
 * The modules of a QR code as lines of "1" and "0" (what the tests compare).
 * @param {QrCode} code
 */
export function qrRows(code) {
  return code.modules.map((row) => row.map((d) => (d ? "1" : "0")).join(""));
}
