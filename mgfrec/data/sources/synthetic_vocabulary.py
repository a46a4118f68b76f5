"""The words the synthetic data set's titles are made of: per genre its album words and tag phrases, the album
forms, and the first names, last names and band nouns artists are named from (see :mod:`.synthetic`)."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    """A genre's album words, written ``|``-separated so a vocabulary reads as one line."""
    return tuple(text.split("|"))


# Genre -> (album words, tag phrases). Words are genre-typical so that titles embed near their genre.
GENRES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Jazz": (
        _words(
            "Midnight|Blue|Smoke|Velvet|Bebop|Swing|Saxophone|Lounge|"
            "Moonlight|Trumpet|Cool|Harlem|Standards|Groove|Brass|Nightclub"
        ),
        ("Jazz", "Cool Jazz", "Jazz Quartet"),
    ),
    "Classical": (
        _words(
            "Symphony|Sonata|Concerto|Nocturne|Requiem|Overture|Prelude|Fugue|"
            "Adagio|Partita|Etudes|Chamber|Strings|Variations|Serenade|Opus"
        ),
        ("Classical", "Orchestral Classical", "Classical Piano"),
    ),
    "Heavy Metal": (
        _words("Iron|Thunder|Steel|Inferno|Blood|Doom|Fire|Storm|Skull|Chains|Darkness|Wrath|Hammer|Rage|Abyss|Venom"),
        ("Heavy Metal", "Thrash Metal", "Doom Metal"),
    ),
    "Country": (
        _words(
            "Dusty|Road|Whiskey|Honky Tonk|Prairie|Cowboy|Tennessee|Pickup|"
            "Barn|Highway|Sunset|Boots|Rodeo|Hometown|Creek|Porch"
        ),
        ("Country", "Outlaw Country", "Country Western"),
    ),
    "Hip Hop": (
        _words(
            "Street|Block|Hustle|Flow|Beats|Mixtape|Concrete|City|"
            "Cipher|Rhymes|Crew|Boombox|Bars|Corner|Underground|Gold"
        ),
        ("Hip Hop", "Rap", "Hip Hop Beats"),
    ),
    "Electronic": (
        _words(
            "Neon|Pulse|Circuit|Synth|Voltage|Binary|Laser|Techno|Signal|Orbit|Digital|Wave|Frequency|Echo|Machine|Rave"
        ),
        ("Electronic", "Techno", "Synthwave"),
    ),
    "Blues": (
        _words(
            "Delta|Crossroads|Muddy|Rain|Train|Mississippi|Lonesome|Harmonica|"
            "Juke Joint|Bottleneck|Sorrow|River|Devil|Shuffle|Moan|Levee"
        ),
        ("Blues", "Delta Blues", "Chicago Blues"),
    ),
    "Folk": (
        _words(
            "Meadow|Willow|Harvest|Fiddle|Hills|Lantern|Ballads|Acoustic|"
            "Hearth|Orchard|Wanderer|Pines|Village|Sparrow|Autumn|Banjo"
        ),
        ("Folk", "Acoustic Folk", "Folk Ballads"),
    ),
    "Reggae": (
        _words(
            "Island|Sunshine|Roots|Dub|Rasta|Kingston|Irie|Riddim|"
            "Lion|Zion|Tropical|Bassline|Sound System|Jah|Ocean|Palm"
        ),
        ("Reggae", "Roots Reggae", "Dub Reggae"),
    ),
    "Gospel": (
        _words(
            "Glory|Hallelujah|Grace|Praise|Heaven|Choir|Spirit|Salvation|"
            "Amen|Hymns|Faith|Jubilee|Revival|Blessed|Mercy|Sunday"
        ),
        ("Gospel", "Gospel Choir", "Southern Gospel"),
    ),
    "Latin": (
        _words(
            "Salsa|Fiesta|Corazon|Tango|Caliente|Havana|Bolero|Rumba|Noche|Sol|Cumbia|Mambo|Amor|Samba|Carnaval|Ritmo"
        ),
        ("Latin", "Salsa Latin", "Latin Dance"),
    ),
    "Punk Rock": (
        _words(
            "Riot|Anarchy|Garage|Rebel|Noise|Safety Pin|Chaos|Basement|Snarl|Sneer|Skate|Static|Spit|Broken|Fast|Loud"
        ),
        ("Punk Rock", "Garage Punk", "Hardcore Punk"),
    ),
}
ALBUM_FORMS = ("Sessions", "Live", "Collection", "Nights", "Stories", "Songs", "Anthology", "Tapes", "", "", "", "")
FIRST_NAMES = (
    "Nina",
    "Otis",
    "Mavis",
    "Ray",
    "Etta",
    "Hank",
    "Lena",
    "Miles",
    "Patsy",
    "Dexter",
    "Ella",
    "Jimmy",
    "Rosa",
    "Felix",
    "Ida",
    "Lou",
    "Nora",
    "Sam",
    "Vera",
    "Cal",
    "June",
    "Wes",
    "Ada",
    "Buddy",
    "Iris",
    "Leon",
    "Mae",
    "Rex",
    "Tess",
    "Abe",
    "Cora",
    "Gus",
    "Hazel",
    "Ike",
    "Jo",
    "Kit",
    "Lyle",
    "Opal",
    "Ned",
)
LAST_NAMES = (
    "Calloway",
    "Redding",
    "Staples",
    "Whitfield",
    "Monroe",
    "Garland",
    "Holloway",
    "Bishop",
    "Crane",
    "Dalton",
    "Everett",
    "Fontaine",
    "Gaines",
    "Harlan",
    "Jennings",
    "Keller",
    "Lomax",
    "Merritt",
    "Norwood",
    "Pickett",
    "Quarles",
    "Rhodes",
    "Sutton",
    "Thorne",
    "Underwood",
    "Vance",
    "Waller",
    "Yates",
    "Ashby",
    "Brooks",
    "Carver",
    "Drake",
    "Ellison",
    "Fuller",
    "Griggs",
    "Hayes",
    "Ivey",
)
BAND_NOUNS = (
    "Wolves",
    "Riders",
    "Kings",
    "Brothers",
    "Sisters",
    "Ramblers",
    "Collective",
    "Orchestra",
    "Quartet",
    "Trio",
    "Band",
    "Crew",
    "Saints",
    "Drifters",
    "Hounds",
    "Travelers",
    "Union",
    "Society",
)
