/** Plain-text tables that fit a terminal (80 columns unless told), for people; scripts use --json. */
export interface Column {
  readonly title: string;
  readonly align?: 'left' | 'right';
  /** May be cut (with "…") to fit; never below this many characters. */
  readonly shrinkTo?: number;
}

export const TABLE_WIDTH = 80;

/** The terminal's width when stdout is one, else 80 (a pipe, a file, a script). */
export function terminalWidth(): number {
  return process.stdout.isTTY && process.stdout.columns > TABLE_WIDTH ? process.stdout.columns : TABLE_WIDTH;
}

/** Widths from the rows' contents, then the shrinkable columns cut, widest first, until the table fits. */
export function fitWidths(columns: readonly Column[], rows: readonly (readonly string[])[], width = TABLE_WIDTH): number[] {
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] ?? '').length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + widths.length - 1;
  while (total() > width) {
    let widest = -1;
    for (const [i, c] of columns.entries()) {
      if (c.shrinkTo !== undefined && widths[i]! > c.shrinkTo && (widest < 0 || widths[i]! > widths[widest]!)) widest = i;
    }
    if (widest < 0) break;
    widths[widest]!--;
  }
  return widths;
}

export function formatRow(columns: readonly Column[], widths: readonly number[], cells: readonly string[]): string {
  const parts = cells.map((cell, i) => {
    const w = widths[i]!;
    const text = cell.length > w ? `${cell.slice(0, Math.max(0, w - 1))}…` : cell;
    if (i === cells.length - 1 && columns[i]?.align !== 'right') return text;
    return columns[i]?.align === 'right' ? text.padStart(w) : text.padEnd(w);
  });
  return parts.join(' ');
}

export function formatHeader(columns: readonly Column[], widths: readonly number[]): string {
  return formatRow(
    columns,
    widths,
    columns.map((c) => c.title),
  );
}

export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[], width = TABLE_WIDTH): string {
  const widths = fitWidths(columns, rows, width);
  return [formatHeader(columns, widths), ...rows.map((r) => formatRow(columns, widths, r))].map((l) => `${l}\n`).join('');
}

/** 16777216 -> "16M": binary units, as ls -h. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return String(bytes);
  const units = ['K', 'M', 'G', 'T', 'P'];
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)}${units[unit]}`;
}
