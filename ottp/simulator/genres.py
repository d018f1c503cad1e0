"""Category profiles of the simulated catalog (private): each category's share of titles,
share of episodes, typical episode length and sub-genre keywords, and the words titles are
named with. A category without a profile (a seed added later) gets the default one.
"""

from __future__ import annotations

import numpy as np

N_CLUSTERS = 4

# title share, episode share, typical episode minutes, keywords (3 for each sub-genre)
# fmt: off
PROFILES: dict[str, tuple[float, float, tuple[int, ...], tuple[str, ...]]] = {
    "action": (0.11, 0.35, (42, 50, 55), (
        "heist", "car-chase", "explosions", "martial-arts", "revenge", "bounty-hunter", "spy",
        "military", "mercenary", "superhero", "disaster", "survival",
    )),
    "comedy": (0.14, 0.60, (22, 25, 30), (
        "sitcom", "workplace", "family-comedy", "stand-up", "sketch", "satire",
        "romantic-comedy", "buddy", "road-trip", "dark-comedy", "parody", "slapstick",
    )),
    "drama": (0.16, 0.60, (45, 52, 58), (
        "family", "coming-of-age", "melodrama", "legal", "medical", "political", "period",
        "historical", "biopic", "social-issues", "addiction", "literary",
    )),
    "thriller": (0.10, 0.45, (42, 48, 55), (
        "crime", "detective", "whodunit", "psychological", "mystery", "noir", "conspiracy",
        "espionage", "cyber", "serial-killer", "hostage", "courtroom",
    )),
    "horror": (0.06, 0.30, (40, 45, 50), (
        "haunted-house", "ghost", "possession", "zombie", "slasher", "creature", "vampire",
        "occult", "folk-horror", "found-footage", "monster", "supernatural",
    )),
    "scifi": (0.07, 0.50, (45, 50, 58), (
        "space", "space-opera", "aliens", "time-travel", "clones", "virtual-reality",
        "dystopia", "post-apocalyptic", "cyberpunk", "robots", "androids", "first-contact",
    )),
    "romance": (0.06, 0.35, (30, 42, 48), (
        "wedding", "holiday", "summer", "love-triangle", "forbidden-love", "period-romance",
        "second-chance", "reunion", "long-distance", "teen-romance", "royal",
        "workplace-romance",
    )),
    "documentary": (0.08, 0.50, (45, 50, 55), (
        "nature", "wildlife", "ocean", "true-crime", "politics", "history", "music", "food",
        "travel", "science", "biography", "sports-doc",
    )),
    "kids": (0.07, 0.70, (20, 22, 24), (
        "preschool", "educational", "bedtime", "adventure", "animals", "dinosaurs",
        "fairy-tale", "musical", "puppets", "friendship", "school", "superheroes-kids",
    )),
    "animation": (0.06, 0.60, (22, 24, 26), (
        "anime", "mecha", "isekai", "family-animation", "cgi", "shorts", "adult-animation",
        "stop-motion", "slice-of-life", "fantasy", "musical-animation", "superhero-animation",
    )),
    "reality": (0.05, 0.85, (40, 45, 52), (
        "competition", "talent", "game-show", "dating", "docusoap", "prank", "cooking",
        "makeover", "home-renovation", "survival-show", "travel-show", "talent-search",
    )),
    "sports": (0.04, 0.50, (45, 52, 58), (
        "football", "basketball", "live-match", "tennis", "golf", "athletics", "motorsport",
        "cycling", "olympics", "boxing", "esports", "highlights",
    )),
}
# fmt: on
DEFAULT_PROFILE = (0.06, 0.5, (30, 45, 55), ())

# fmt: off
NAME_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Crimson", "Lost", "Wild", "Frozen",
    "Burning", "Quiet", "Dark", "Bright", "Secret", "Final", "Endless", "Savage", "Gentle",
    "Hollow", "Electric", "Midnight", "Northern", "Restless", "Velvet", "Iron", "Paper",
    "Distant", "Sudden", "Little", "Lucky", "Bitter", "Painted", "Fallen", "Rising", "Stolen",
    "Perfect", "Crooked", "Blue", "Red", "Second",
)
NAME_NOUNS = (
    "Harbor", "Signal", "Garden", "Empire", "Promise", "Frontier", "Station", "Kingdom",
    "River", "Witness", "Orchard", "Circuit", "Horizon", "Island", "Letter", "Mirror", "Canyon",
    "Summer", "Winter", "Machine", "Crown", "Valley", "Storm", "Voyage", "Lantern", "Academy",
    "Ritual", "Archive", "Tide", "Game", "Road", "Heart", "City", "House", "Line", "Code",
    "Season", "Shadow", "Planet", "Street", "Bridge", "Family", "Engine", "Forest", "Ocean",
    "Dream", "Lesson", "Hour", "Party", "Chase",
)
# fmt: on
NAME_SUFFIXES = ("", "", "", "", " II", " Returns", ": Origins", " III")


def name_words(rng: np.random.Generator) -> str:
    """An adjective and a noun (drawn in that order): "Silent Harbor"."""
    adjective = NAME_ADJECTIVES[rng.integers(len(NAME_ADJECTIVES))]
    noun = NAME_NOUNS[rng.integers(len(NAME_NOUNS))]
    return f"{adjective} {noun}"


def profile(cat: str) -> tuple[float, float, tuple[int, ...], tuple[str, ...]]:
    return PROFILES.get(cat, DEFAULT_PROFILE)


def category_keywords(cat: str) -> list[str]:
    kw = list(profile(cat)[3])
    if len(kw) < 3 * N_CLUSTERS:
        kw = [f"{cat}-{i + 1}" for i in range(3 * N_CLUSTERS)]
    return kw


def category_weights(categories: list[str]) -> np.ndarray:
    w = np.array([profile(c)[0] for c in categories], dtype=np.float64)
    return w / w.sum()
