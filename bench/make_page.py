#!/usr/bin/env python3
"""Writes a deterministic article of about KIB KiB with EMBEDS Infomaniak embeds
(in both markups the CMS plugins write), one iframe to another host and ordinary
markup: bench/page.html is `make_page.py bench/page.html 40 5`."""
import sys

if len(sys.argv) != 4:
    sys.exit("usage: make_page.py OUT KIB EMBEDS")
out, kib, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# The first five are those of bench/page.html; more are made the same way.
shares = ["1jhvl2uqa5rdf", "3mzp8kd1wq7tb", "5gxc2nv9ho4js", "7rby6et3ul0fa", "9kwd4qs5mi2ce"]
shares += ["%dx%011d" % (i, i * 7919) for i in range(len(shares), count)]
words = ("gateway session token stream chunk iframe member lesson video module archive "
         "editor course chapter exercise review summary outline question answer practice "
         "schedule workshop speaker slides transcript caption playlist episode season").split()

def paragraph(seed):
    n = 45 + seed % 25
    text = " ".join(words[(seed * 7 + i * 13) % len(words)] for i in range(n))
    return "<p>" + text[0].upper() + text[1:] + ". <a href=\"/videos/notes/" + str(seed) + "\">Notes</a> &amp; <em>more</em>.</p>\n"

parts = ["""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Members' course: streaming at the edge</title>
<link rel="stylesheet" href="/static/site.css">
<style>
body { font-family: system-ui, sans-serif; margin: 0; line-height: 1.5; }
header nav a { margin-right: 1em; }
article { max-width: 46em; margin: 2em auto; }
figure, iframe { display: block; margin: 1.5em 0; }
.lesson h2 { border-bottom: 1px solid #ccc; }
</style>
<script type="application/ld+json">{"@type": "Course", "name": "Streaming at the edge", "provider": "Sample CMS"}</script>
</head>
<body>
<header><nav>
"""]
parts += ['<a href="/section/%d">Section %d</a>\n' % (i, i) for i in range(24)]
parts.append("</nav></header>\n<main><article>\n<h1>Streaming at the edge</h1>\n")

embeds = [
    '<iframe frameborder="0" width="720" height="405" src="https://api.vod2.infomaniak.com/res/embed/%s.html" allowfullscreen></iframe>\n',
    '<iframe title="Lesson video" width="720" height="405" src="https://api.vod2.infomaniak.com/res/embed/%s.html?autoplay=0&amp;muted=1" allow="autoplay; fullscreen"></iframe>\n',
]
other = '<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/aBcDeFgHiJk" title="Other host"></iframe>\n'

target = kib * 1024
sections = 2 * count
seed = 0
body_budget = target - 2600  # head, nav and footer
per_section = body_budget // sections
for s in range(sections):
    parts.append('<section class="lesson" id="lesson-%d">\n<h2>Lesson %d</h2>\n' % (s, s + 1))
    size = 0
    while size < per_section - 450:
        p = paragraph(seed)
        seed += 1
        parts.append(p)
        size += len(p)
    if s % 2 == 0:
        parts.append(embeds[(s // 2) % 2] % shares[s // 2])
    elif s == 5:
        parts.append(other)
    parts.append('<figure><img src="/media/lesson-%d.jpg" alt="Slide %d" width="640" height="360" loading="lazy"><figcaption>Slide %d</figcaption></figure>\n' % (s, s, s))
    parts.append("</section>\n")

parts.append("""</article></main>
<footer><p>&copy; Sample CMS. <a href="/privacy">Privacy</a> <a href="/terms">Terms</a></p></footer>
<script src="/static/site.js" defer></script>
</body>
</html>
""")
page = "".join(parts)
assert page.count("api.vod2.infomaniak.com/res/embed/") == count
with open(out, "w", encoding="utf-8") as f:
    f.write(page)
print("wrote %s (%d bytes)" % (out, len(page.encode())))
