"""svg — the recovery-time chart of a chaos report: per fault kind, stacked horizontal bars of
the median times to detection, to the restart and to the first new step."""

COLORS = ("#d62728", "#ff7f0e", "#1f77b4")
LEGEND = ("to detection (join: request)", "to restart", "to first step")


def recovery_chart(kinds):
    """the SVG text; kinds is [(kind, (to detection, to restart, to first step))]"""
    W, row, x0, y0 = 680, 26, 110, 40
    H = y0 + row * len(kinds) + 50
    top = max(sum(m) for _, m in kinds) * 1.1 or 1
    pw = W - x0 - 20
    bottom = y0 + row * len(kinds)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{x0}" y="18" font-size="14">from a fault to the first new step '
           f'(median s)</text>']
    for k in range(6):
        x = x0 + pw * k / 5
        out.append(f'<line x1="{x:.1f}" y1="{y0 - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">'
                   f'{top * k / 5:.1f}</text>')
    for j, (kind, med) in enumerate(kinds):
        y, x = y0 + row * j, x0
        out.append(f'<text x="{x0 - 6}" y="{y + 15}" text-anchor="end">{kind}</text>')
        for v, c in zip(med, COLORS):
            w = pw * v / top
            out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                       f'fill="{c}"/>')
            x += w
    for i, (name, c) in enumerate(zip(LEGEND, COLORS)):
        out.append(f'<rect x="{x0 + 190 * i}" y="{H - 22}" width="12" height="12" fill="{c}"/>'
                   f'<text x="{x0 + 190 * i + 16}" y="{H - 12}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def draw_recovery(kinds, path):
    with open(path, "w") as f:
        f.write(recovery_chart(kinds))
