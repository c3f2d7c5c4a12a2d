"""Gymnasium's CarRacing-v3 with a faster renderer that draws exactly the same pixels.

Nearly all of a stock step is the renderer: every frame it rotates all ~730 grass and road polygons
vertex by vertex in Python (pygame `Vector2`), to draw the ~50 that are on screen, and it loads the
score's font from disk. Here the polygons' vertices are kept in arrays, transformed for all polygons at
once, and only the visible ones are handed to the same pygame drawing calls, in the same order, with
the same float coordinates; the font is loaded once and the score's text rendered only when it changes.
Physics, rewards, termination and info are the parent's own code. Observations are bit-identical to
`CarRacing-v3` (tests/test_carracing.py plays whole episodes of both side by side).

The rotation is computed with the same arithmetic as `Vector2.rotate_rad`: pygame rotates (1, 0) into
(cos, sin) (special-casing multiples of 90 degrees, exactly as it does for every vertex), and
`cos*x - sin*y`, `sin*x + cos*y` in float64 then match pygame's C code operation for operation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing
from gymnasium.envs.box2d.car_racing import CarRacing
from pygame import gfxdraw

FAST_ID = "CarRacingFast-v3"
_RENDERED_HERE = ("state_pixels", "rgb_array")  # "human" and "state_pixels_list" go to the parent


class FastCarRacing(CarRacing):
    """`CarRacing` with a vectorized road renderer; everything else is inherited unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._canvas: pygame.Surface | None = None
        self._flipped: pygame.Surface | None = None
        self._font: pygame.font.Font | None = None
        self._text: tuple[str, pygame.Surface] | None = None
        self._polys_of: list | None = None  # the road_poly list the arrays below were built from
        self._vertices = np.zeros((0, 4, 2))
        self._colors: list[Any] = []

    # -- scene -------------------------------------------------------------------------------------
    def _build_polygons(self) -> None:
        """Background, grass squares and road tiles as one (P, 4, 2) array, in the parent's draw order.

        Tile colours stay references to the tiles' own arrays: a visited tile changes colour in place.
        """
        bound, dim = car_racing.PLAYFIELD, car_racing.GRASS_DIM
        field = [(bound, bound), (bound, -bound), (-bound, -bound), (-bound, bound)]
        grass = [[(dim * x + dim, dim * y), (dim * x, dim * y), (dim * x, dim * y + dim),
                  (dim * x + dim, dim * y + dim)]
                 for x in range(-20, 20, 2) for y in range(-20, 20, 2)]
        road = [[(p[0], p[1]) for p in poly] for poly, _ in self.road_poly]
        if any(len(poly) != 4 for poly in road):
            raise RuntimeError("FastCarRacing expects quadrilateral road tiles")
        self._vertices = np.array([field, *grass, *road], dtype=np.float64).reshape(-1, 4, 2)
        self._colors = [self.bg_color] + [self.grass_color] * len(grass) + [c for _, c in self.road_poly]
        self._polys_of = self.road_poly

    def _render_road(self, zoom: float, translation: Any, angle: float) -> None:
        if self._polys_of is not self.road_poly:
            self._build_polygons()
        cos, sin = pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
        x, y = self._vertices[..., 0], self._vertices[..., 1]
        screen_x = (cos * x - sin * y) * zoom + translation[0]
        screen_y = (sin * x + cos * y) * zoom + translation[1]
        margin = car_racing.MAX_SHAPE_DIM
        inside = ((-margin <= screen_x) & (screen_x <= car_racing.WINDOW_W + margin)
                  & (-margin <= screen_y) & (screen_y <= car_racing.WINDOW_H + margin))
        visible = inside.any(axis=1)
        points = np.stack([screen_x, screen_y], axis=-1)
        if _covers_window(points[0]):  # then its polygon would set every pixel to its colour
            _fill(self.surf, [int(c) for c in self._colors[0]])
            visible[0] = False
        else:  # drawn unclipped, on black
            _fill(self.surf, (0, 0, 0))
            visible[0] = True
        for i in np.flatnonzero(visible).tolist():
            poly = [tuple(p) for p in points[i].tolist()]
            color = [int(c) for c in self._colors[i]]
            gfxdraw.aapolygon(self.surf, poly, color)
            gfxdraw.filled_polygon(self.surf, poly, color)

    # -- frame -------------------------------------------------------------------------------------
    def _render(self, mode: str) -> Any:
        if mode not in _RENDERED_HERE or "t" not in self.__dict__:
            return super()._render(mode)
        assert self.car is not None
        if self.clock is None:
            self.clock = pygame.time.Clock()
        width, height = car_racing.WINDOW_W, car_racing.WINDOW_H
        if self._canvas is None:
            self._canvas = pygame.Surface((width, height))
        self.surf = self._canvas  # _render_road paints every pixel of it first
        angle = -self.car.hull.angle
        zoom = (0.1 * car_racing.SCALE * max(1 - self.t, 0)
                + car_racing.ZOOM * car_racing.SCALE * min(self.t, 1))  # the first second zooms in
        scroll = pygame.math.Vector2((-self.car.hull.position[0] * zoom,
                                      -self.car.hull.position[1] * zoom)).rotate_rad(angle)
        translation = (width / 2 + scroll[0], height / 4 + scroll[1])
        self._render_road(zoom, translation, angle)
        self.car.draw(self.surf, zoom, translation, angle, mode != "state_pixels")
        self.surf = self._flipped_canvas()
        self._render_indicators(width, height)
        text = self._score_text(f"{self.reward:04.0f}")
        rect = text.get_rect()
        rect.center = (60, height - height * 2.5 / 40.0)
        self.surf.blit(text, rect)
        size = (car_racing.STATE_W, car_racing.STATE_H) if mode == "state_pixels" else \
            (car_racing.VIDEO_W, car_racing.VIDEO_H)
        return self._create_image_array(self.surf, size)

    def _flipped_canvas(self) -> pygame.Surface:
        """`pygame.transform.flip(canvas, False, True)` into a surface kept between frames."""
        assert self._canvas is not None
        if self._flipped is None:
            self._flipped = self._canvas.copy()
        pygame.surfarray.pixels2d(self._flipped)[...] = pygame.surfarray.pixels2d(self._canvas)[:, ::-1]
        return self._flipped

    def _score_text(self, text: str) -> pygame.Surface:
        """The dashboard's score, rendered once per distinct text with one font object."""
        if self._text is None or self._text[0] != text:
            if self._font is None:
                pygame.font.init()
                self._font = pygame.font.Font(pygame.font.get_default_font(), 42)
            self._text = (text, self._font.render(text, True, (255, 255, 255), (0, 0, 0)))
        return self._text[1]


def _covers_window(quad: np.ndarray, margin: float = 4.0) -> bool:
    """Whether the convex quadrilateral (4, 2) contains the window with `margin` pixels to spare.

    Then its anti-aliased outline is off screen and its filled polygon fills every row from edge to
    edge: the result is the window filled with its colour. The margin covers the outline's width and
    the rasterizer's rounding of the vertices to integers.
    """
    width, height = car_racing.WINDOW_W, car_racing.WINDOW_H
    corners = np.array([(-margin, -margin), (width + margin, -margin), (width + margin, height + margin),
                        (-margin, height + margin)])
    edges = np.roll(quad, -1, axis=0) - quad  # (4, 2): vertex k -> k+1
    to_corners = corners[:, None, :] - quad[None, :, :]  # (corner, vertex, 2)
    cross = edges[None, :, 0] * to_corners[..., 1] - edges[None, :, 1] * to_corners[..., 0]
    return bool((cross > 0).all() or (cross < 0).all())


def _fill(surface: pygame.Surface, color: Any) -> None:
    """`surface.fill(color)`, as ordinary stores: SDL's fill streams past the cache, and the polygons
    drawn next then read the whole window back from memory (measured: ~0.5 ms a frame slower)."""
    pygame.surfarray.pixels2d(surface)[...] = surface.map_rgb(color)  # the view's lock ends here


def register() -> None:
    """Make `CarRacingFast-v3` available to gym.make, with CarRacing-v3's own registration settings."""
    if FAST_ID in gym.registry:
        return
    stock = gym.spec("CarRacing-v3")
    gym.register(id=FAST_ID, entry_point=FastCarRacing, max_episode_steps=stock.max_episode_steps,
                 reward_threshold=stock.reward_threshold)


register()
