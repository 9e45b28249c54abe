# %% [markdown]
# # 01 · The Shapes dataset: solutions to the exercises
#
# One way to solve each exercise of lesson 01, checked by the same functions the lesson uses.
# Try them yourself first: the checks' feedback is designed to guide you there.

# %%
from dalle_lessons import shapes
from dalle_lessons.exercises.l01_shapes import check_caption_for, check_cell_of, check_relation_of

# %% [markdown]
# ## Exercise 1: relations
#
# Columns decide left and right, rows decide above and below, and row 0 is the top row. Each test
# is strict (`<`, `>`): two objects in the same column are neither left nor right of each other.
# A diagonal pair satisfies two relations at once, so we collect every one that holds.

# %%
def relation_of(a: shapes.ShapeObject, b: shapes.ShapeObject) -> list[str]:
    """Every relation R in shapes.RELATIONS for which 'a R b' holds."""
    relations = []
    if a.col < b.col:
        relations.append("left of")
    if a.col > b.col:
        relations.append("right of")
    if a.row < b.row:
        relations.append("above")
    if a.row > b.row:
        relations.append("below")
    return relations


assert check_relation_of(relation_of)

# %% [markdown]
# It agrees with the relations a `Scene` lists for its first object relative to its second:

# %%
a = shapes.ShapeObject("circle", "red", "large", 0, 2)
b = shapes.ShapeObject("square", "green", "small", 2, 0)
print(relation_of(a, b), shapes.Scene((a, b), "black").relations())

# %% [markdown]
# ## Exercise 2: from a point to its cell
#
# A cell is `image_size / 3` pixels wide, a fraction in general (32 / 3 = 10.67), so we divide with
# `/` and round *down* with `//`. A point exactly on the far edge (`x == image_size`) would land in a
# fourth cell, so we clamp it to the last one.

# %%
def cell_of(x: float, y: float, image_size: int) -> tuple[int, int]:
    """The (row, col) of the 3x3 grid cell that holds the point (x, y)."""
    side = image_size / 3
    return min(2, int(y // side)), min(2, int(x // side))


assert check_cell_of(cell_of)
print([cell_of(*shapes.cell_center(row, col, 32), 32) for row in range(3) for col in range(3)])

# %% [markdown]
# ## Exercise 3: a caption the judge accepts
#
# Name each object by size, color and shape. A lone object gets its position's canonical name;
# two objects get the first relation `scene.relations()` lists, with the objects in the order the
# relation reads (object `i` RELATION object `j`).

# %%
def caption_for(scene: shapes.Scene) -> str:
    """A complete, true caption for a one- or two-object scene."""
    def noun(obj: shapes.ShapeObject) -> str:
        return f"{obj.size} {obj.color} {obj.shape}"

    if len(scene.objects) == 1:
        obj = scene.objects[0]
        return f"a {noun(obj)} at the {shapes.POSITION_NAMES[obj.row, obj.col]}"
    i, relation, j = scene.relations()[0]
    return f"a {noun(scene.objects[i])} {relation} a {noun(scene.objects[j])}"


assert check_caption_for(caption_for)
print(caption_for(shapes.Scene((a,), "white")))
print(caption_for(shapes.Scene((a, b), "white")))
