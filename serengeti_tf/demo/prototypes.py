"""How each of the paper's 52 classes (and a person) is drawn: one hand-written prototype per class.

Each class has a body shape (size, aspect, leg length, neck, posture), body colour, a texture
(stripes, spots, band, saddle, two-tone belly, dots, ...) and sometimes a mark (mane, horns, white
rump, big ears, tusks, dark face). Herd species draw 1-3 individuals; nocturnal species are
photographed at night more often.

Look-alike groups share body shape and colour and differ by one small cue, on purpose, like the real
lionMale/lionFemale and gazelle pairs: lionFemale/lionMale (mane)/caracal; gazelleThomsons (side
band)/gazelleGrants (white rump)/impala/reedbuck; dikDik/steenbok/duiker; hartebeest/topi (dark
shoulder patch); wildebeest/waterbuck (white rump); cheetah/leopard/serval (spot size, body size);
hyenaSpotted/hyenaStriped/aardwolf; jackal/batEaredFox (ears); genet/civet; honeyBadger/zorilla;
koriBustard/secretaryBird; vulture/otherBird; elephant/rhinoceros/hippopotamus; baboon/vervetMonkey;
hare/rodents/mongoose. A rare class whose look-alike is frequent is then mostly confused with it, and
a CNN needs many examples to learn the small cue; that is the imbalance problem the paper studies.

**Honesty.** The prototypes were written once to look plausible; they were not tuned to make any
sampler or training method win.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prototype:
    """How one class is drawn. Sizes are fractions of the image height, shapes of the body height."""

    body: str            # quad | bird | upright | insect
    colour: str          # body colour, hex
    colour2: str         # texture / mark colour, hex
    pattern: str         # none | stripes | hstripes | spots | dots | band | saddle | twotone | patch
    strength: float      # texture contrast 0..1
    period: float        # texture period as a fraction of body height
    mark: str            # none | mane | horns | horn | rump | ears | tusks | face
    size: float          # body height / image height at the nearest distance
    aspect: float        # body width / body height
    legs: float          # leg length / body height
    neck: float          # head height above the body / body height
    head: float          # head size / body height
    herd: bool = False   # draws 1-3 individuals
    nocturnal: bool = False
    colour_jitter: float = 0.05


def _p(body, colour, colour2, pattern, strength, period, mark, size, aspect, legs, neck, head, **kw):
    return Prototype(body, colour, colour2, pattern, strength, period, mark, size, aspect, legs, neck, head,
                     **kw)


# One prototype per class, written to look plausible (not tuned); look-alike groups are listed in
# the module docstring.
PROTOTYPES: dict[str, Prototype] = {
    # Large bovids.
    "wildebeest": _p("quad", "#55504b", "#2c2926", "stripes", 0.35, 0.22, "none", 0.19, 1.55, 0.6, 0.25, 0.42,
                     herd=True),
    "waterbuck": _p("quad", "#5f5650", "#efefea", "none", 0.0, 0.3, "rump", 0.19, 1.5, 0.6, 0.35, 0.4),
    "buffalo": _p("quad", "#2a2826", "#7a7064", "none", 0.0, 0.3, "horns", 0.22, 1.7, 0.45, 0.1, 0.45, herd=True),
    "hartebeest": _p("quad", "#b27b4b", "#4a2e26", "none", 0.0, 0.3, "horns", 0.18, 1.45, 0.65, 0.45, 0.38),
    "topi": _p("quad", "#9a5a3a", "#3a2a36", "patch", 0.85, 0.3, "horns", 0.18, 1.45, 0.65, 0.45, 0.38),
    "eland": _p("quad", "#c9a57a", "#ece2d0", "stripes", 0.45, 0.3, "horns", 0.24, 1.7, 0.6, 0.3, 0.4),
    "cattle": _p("quad", "#8b5a2b", "#f2efe8", "spots", 0.9, 0.9, "horns", 0.2, 1.6, 0.55, 0.2, 0.42, herd=True,
                 colour_jitter=0.12),
    # Antelopes and gazelles.
    "gazelleThomsons": _p("quad", "#c18a52", "#231b15", "band", 0.9, 0.3, "horns", 0.12, 1.4, 0.8, 0.4, 0.38,
                          herd=True),
    "gazelleGrants": _p("quad", "#c8985f", "#f6f1e6", "none", 0.0, 0.3, "rump", 0.14, 1.4, 0.8, 0.45, 0.38, herd=True),
    "impala": _p("quad", "#b0703d", "#ecdfca", "twotone", 0.8, 0.3, "horns", 0.14, 1.4, 0.8, 0.45, 0.38, herd=True),
    "reedbuck": _p("quad", "#c2a36c", "#ece2cf", "twotone", 0.5, 0.3, "none", 0.13, 1.4, 0.75, 0.45, 0.38),
    "bushbuck": _p("quad", "#8a4a2a", "#f0e8d8", "dots", 0.9, 0.35, "none", 0.12, 1.4, 0.7, 0.4, 0.38),
    "duiker": _p("quad", "#8a7a5a", "#6a5a40", "none", 0.0, 0.3, "none", 0.09, 1.35, 0.6, 0.3, 0.4),
    "dikDik": _p("quad", "#8e8370", "#c5b9a0", "twotone", 0.4, 0.3, "none", 0.07, 1.3, 0.7, 0.35, 0.45),
    "steenbok": _p("quad", "#b3743f", "#e8dcc6", "twotone", 0.4, 0.3, "ears", 0.08, 1.3, 0.7, 0.35, 0.45),
    # Zebra, giraffe, ostrich.
    "zebra": _p("quad", "#efede6", "#161616", "stripes", 1.0, 0.18, "none", 0.19, 1.5, 0.6, 0.35, 0.4, herd=True),
    "giraffe": _p("quad", "#d09a52", "#6b3b1f", "spots", 0.9, 0.3, "none", 0.2, 1.15, 1.0, 1.3, 0.3),
    "ostrich": _p("bird", "#222222", "#e8e4dc", "twotone", 0.6, 0.3, "none", 0.15, 1.3, 1.1, 0.95, 0.25),
    # Pachyderms.
    "elephant": _p("quad", "#7d7a78", "#6a6766", "none", 0.0, 0.3, "ears", 0.3, 1.35, 0.5, 0.05, 0.55, herd=True),
    "rhinoceros": _p("quad", "#807b76", "#d8d2c8", "none", 0.0, 0.3, "horn", 0.2, 1.8, 0.35, 0.0, 0.45),
    "hippopotamus": _p("quad", "#745f66", "#b08890", "twotone", 0.4, 0.3, "none", 0.17, 2.0, 0.25, 0.0, 0.5,
                       nocturnal=True),
    # Pigs, badgers and other low animals.
    "warthog": _p("quad", "#6a5e55", "#efe8da", "none", 0.0, 0.3, "tusks", 0.11, 1.5, 0.45, 0.05, 0.45),
    "honeyBadger": _p("quad", "#1e1e1e", "#dcdcd6", "saddle", 0.95, 0.3, "none", 0.07, 2.0, 0.3, 0.0, 0.4,
                      nocturnal=True),
    "zorilla": _p("quad", "#1a1a1a", "#f0f0f0", "hstripes", 0.95, 0.35, "none", 0.05, 2.1, 0.3, 0.0, 0.4,
                  nocturnal=True),
    "porcupine": _p("quad", "#3a3632", "#d9d5cc", "stripes", 0.7, 0.12, "none", 0.09, 1.4, 0.2, 0.0, 0.35,
                    nocturnal=True),
    "aardvark": _p("quad", "#a08878", "#8a7060", "none", 0.0, 0.3, "ears", 0.12, 1.9, 0.35, 0.0, 0.45,
                   nocturnal=True),
    # Cats.
    "lionFemale": _p("quad", "#c49a5c", "#5a3a1e", "none", 0.0, 0.3, "none", 0.15, 1.8, 0.55, 0.2, 0.4),
    "lionMale": _p("quad", "#c49a5c", "#5a3a1e", "none", 0.0, 0.3, "mane", 0.16, 1.8, 0.55, 0.2, 0.4),
    "caracal": _p("quad", "#b77a4a", "#2a201a", "none", 0.0, 0.3, "ears", 0.08, 1.7, 0.55, 0.2, 0.4),
    "cheetah": _p("quad", "#d6b070", "#2a2018", "spots", 0.85, 0.18, "none", 0.13, 1.9, 0.75, 0.2, 0.35),
    "leopard": _p("quad", "#c99b55", "#3a2a18", "spots", 0.85, 0.32, "none", 0.13, 1.9, 0.5, 0.2, 0.4,
                  nocturnal=True),
    "serval": _p("quad", "#d1a860", "#2a2018", "spots", 0.85, 0.22, "ears", 0.09, 1.7, 0.7, 0.2, 0.4),
    "wildcat": _p("quad", "#9a8a70", "#4a3e30", "stripes", 0.4, 0.25, "none", 0.07, 1.8, 0.45, 0.15, 0.42,
                  nocturnal=True),
    # Hyenas and dogs.
    "hyenaSpotted": _p("quad", "#a8905e", "#3e3020", "spots", 0.75, 0.28, "none", 0.14, 1.5, 0.6, 0.2, 0.45,
                       nocturnal=True),
    "hyenaStriped": _p("quad", "#a8a08a", "#35302a", "stripes", 0.75, 0.25, "none", 0.13, 1.5, 0.6, 0.2, 0.45,
                       nocturnal=True),
    "aardwolf": _p("quad", "#c4b08a", "#40382a", "stripes", 0.7, 0.25, "none", 0.09, 1.5, 0.55, 0.2, 0.42,
                   nocturnal=True),
    "jackal": _p("quad", "#a68a62", "#353535", "saddle", 0.8, 0.3, "none", 0.08, 1.6, 0.55, 0.25, 0.42),
    "batEaredFox": _p("quad", "#9a9080", "#2a2a2a", "none", 0.0, 0.3, "ears", 0.07, 1.6, 0.5, 0.2, 0.42,
                      nocturnal=True),
    "mongoose": _p("quad", "#6e5a46", "#4a3a2a", "none", 0.0, 0.3, "none", 0.05, 2.4, 0.25, 0.05, 0.4),
    "genet": _p("quad", "#c8bca8", "#2a2420", "spots", 0.8, 0.25, "none", 0.05, 2.2, 0.3, 0.05, 0.4,
                nocturnal=True),
    "civet": _p("quad", "#b0a690", "#1e1e1e", "spots", 0.8, 0.4, "none", 0.07, 2.0, 0.35, 0.05, 0.4,
                nocturnal=True),
    # Primates.
    "baboon": _p("quad", "#7a7058", "#5a5040", "none", 0.0, 0.3, "none", 0.13, 1.05, 0.3, 0.35, 0.45, herd=True),
    "vervetMonkey": _p("quad", "#8a8a78", "#1a1a1a", "none", 0.0, 0.3, "face", 0.09, 1.05, 0.3, 0.35, 0.45),
    # Birds.
    "otherBird": _p("bird", "#5e5650", "#d8d8d0", "twotone", 0.5, 0.3, "none", 0.06, 1.4, 0.5, 0.3, 0.35,
                    colour_jitter=0.25),
    "guineaFowl": _p("bird", "#3a3c44", "#e8e8f0", "dots", 0.9, 0.3, "none", 0.07, 1.3, 0.35, 0.2, 0.3, herd=True),
    "koriBustard": _p("bird", "#8a8270", "#dcd4c4", "twotone", 0.7, 0.3, "none", 0.11, 1.3, 0.8, 0.55, 0.28),
    "secretaryBird": _p("bird", "#a8a8a4", "#1e1e1e", "twotone", 0.6, 0.3, "none", 0.1, 1.3, 1.2, 0.45, 0.28),
    "vulture": _p("bird", "#4a3a2c", "#d0c0a8", "none", 0.0, 0.3, "face", 0.09, 1.1, 0.25, 0.2, 0.35, herd=True),
    # Small things.
    "hare": _p("quad", "#8a7a62", "#e0d8c8", "twotone", 0.4, 0.3, "ears", 0.05, 1.4, 0.2, 0.15, 0.5, nocturnal=True),
    "rodents": _p("quad", "#6a5a48", "#9a8a70", "none", 0.0, 0.3, "none", 0.04, 1.6, 0.12, 0.05, 0.45,
                  nocturnal=True),
    "insectSpider": _p("insect", "#2a2a20", "#6a5a30", "band", 0.5, 0.3, "none", 0.05, 1.5, 0.5, 0.0, 0.35),
    "reptiles": _p("quad", "#6a6a3a", "#3a3a20", "spots", 0.7, 0.35, "none", 0.04, 3.5, 0.12, 0.0, 0.35),
}

# Classes drawn deliberately alike (same shape and colour family, one small distinguishing cue).
LOOKALIKE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("lionFemale", "lionMale", "caracal"), ("gazelleThomsons", "gazelleGrants", "impala", "reedbuck"),
    ("dikDik", "steenbok", "duiker"), ("hartebeest", "topi"), ("wildebeest", "waterbuck"),
    ("cheetah", "leopard", "serval"), ("hyenaSpotted", "hyenaStriped", "aardwolf"), ("jackal", "batEaredFox"),
    ("genet", "civet"), ("honeyBadger", "zorilla"), ("koriBustard", "secretaryBird"), ("vulture", "otherBird"),
    ("elephant", "rhinoceros", "hippopotamus"), ("baboon", "vervetMonkey"), ("hare", "rodents", "mongoose"),
)

HUMAN = _p("upright", "#2f4f7f", "#3a2a20", "none", 0.0, 0.3, "none", 0.2, 0.42, 1.0, 0.0, 0.3,
           colour_jitter=0.3)
