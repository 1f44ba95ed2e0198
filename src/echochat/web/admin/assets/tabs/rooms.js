// @ts-check
/**
 * The Rooms tab: categories (GET/POST /admin/categories, PATCH/DELETE /admin/categories/{id})
 * and public rooms (GET /rooms for the list; POST /admin/rooms, PATCH/DELETE
 * /admin/rooms/{id}). Renaming a category happens in place; a room is edited in the form
 * under the list. Deleting asks first.
 */

import { byId, el, fillSelect } from "/static/js/ui/dom.js";
import { bindForm, problemText, setStatus } from "/static/js/ui/forms.js";
import * as net from "../net.js";
import { listOf } from "../state.js";

export class RoomsTab {
  /** @param {{confirm: (q: {title: string, text: string, ok: string}) => Promise<boolean>}} deps */
  constructor({ confirm }) {
    this.confirm = confirm;
    this.status = byId("admin-rooms-status", HTMLElement);
    this.categoryList = byId("admin-category-list", HTMLElement);
    this.roomList = byId("admin-room-list", HTMLElement);
    this.roomForm = byId("admin-room-form", HTMLFormElement);
    /** @type {any[]} */
    this.categories = [];
    /** @type {any[]} */
    this.rooms = [];
    const categoryForm = byId("admin-category-form", HTMLFormElement);
    bindForm(
      categoryForm,
      async ({ name }) => {
        await net.createCategory({ name: name.trim() });
        categoryForm.reset();
        this.tell(`Category “${name.trim()}” created.`);
        await this.load();
      },
      { status: this.status },
    );
    bindForm(
      this.roomForm,
      async ({ id, name, topic, category_id: category, capacity }) => {
        const body = {
          name: name.trim(),
          topic: topic.trim(),
          category_id: category ? Number(category) : null,
          capacity: capacity.trim() ? Number(capacity) : null,
        };
        if (id) {
          await net.updateRoom(Number(id), body);
          this.tell(`Room “${body.name}” saved.`);
        } else {
          await net.createRoom(body);
          this.tell(`Room “${body.name}” created.`);
        }
        this.edit(null);
        await this.load();
      },
      { status: this.status },
    );
    byId("admin-room-cancel", HTMLButtonElement).addEventListener("click", () => this.edit(null));
  }

  /** @param {string} text */
  tell(text) {
    setStatus(this.status, text, "success");
  }

  async load() {
    try {
      const [categories, rooms] = await Promise.all([net.categories(), net.rooms()]);
      this.categories = listOf(categories, "categories");
      this.rooms = listOf(rooms, "rooms");
      this.render();
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
    }
  }

  /** @param {unknown} id */
  categoryName(id) {
    return this.categories.find((c) => c.id === id)?.name ?? "";
  }

  render() {
    this.categoryList.replaceChildren(...this.categories.map((c) => this.categoryItem(c)));
    const sorted = [...this.rooms].sort(
      (a, b) =>
        this.categoryName(a.category_id).localeCompare(this.categoryName(b.category_id)) ||
        String(a.name).localeCompare(String(b.name)),
    );
    this.roomList.replaceChildren(...sorted.map((r) => this.roomItem(r)));
    const select = byId("admin-room-category", HTMLSelectElement);
    const chosen = select.value;
    select.replaceChildren(
      ...this.categories.map((c) => el("option", { text: c.name, attrs: { value: String(c.id) } })),
    );
    if (chosen) {
      select.value = chosen;
    }
  }

  /** @param {any} category */
  categoryItem(category) {
    const count =
      typeof category.room_count === "number"
        ? category.room_count
        : this.rooms.filter((r) => r.category_id === category.id).length;
    const rename = el("button", {
      className: "button button--small",
      text: "Rename",
      attrs: { type: "button", "aria-label": `Rename ${category.name}` },
    });
    const remove = el("button", {
      className: "button button--small button--danger",
      text: "Delete",
      attrs: { type: "button", "aria-label": `Delete ${category.name}` },
    });
    const name = el("span", { className: "admin-row__name", text: category.name });
    const item = el("li", { className: "admin-row" }, [
      name,
      el("span", { className: "admin-row__meta", text: `${count} room${count === 1 ? "" : "s"}` }),
      rename,
      remove,
    ]);
    item.dataset.category = String(category.id);
    rename.addEventListener("click", () => this.renameInPlace(item, name, category));
    remove.addEventListener("click", async () => {
      const sure = await this.confirm({
        title: "Delete category",
        text: `Delete the category “${category.name}”?`,
        ok: "Delete",
      });
      if (sure) {
        this.run(() => net.deleteCategory(category.id), `Category “${category.name}” deleted.`);
      }
    });
    return item;
  }

  /**
   * @param {HTMLElement} item
   * @param {HTMLElement} name
   * @param {any} category
   */
  renameInPlace(item, name, category) {
    const input = el("input", {
      className: "field__input admin-row__input",
      attrs: { type: "text", maxlength: "40", "aria-label": `New name for ${category.name}` },
    });
    input.value = category.name;
    name.replaceWith(input);
    input.focus();
    input.select();
    let done = false;
    const finish = (/** @type {boolean} */ keep) => {
      if (done) {
        return;
      }
      done = true;
      const value = input.value.trim();
      input.replaceWith(name);
      if (keep && value && value !== category.name) {
        this.run(() => net.updateCategory(category.id, { name: value }), `Renamed to “${value}”.`);
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    void item;
  }

  /** @param {any} room */
  roomItem(room) {
    const edit = el("button", {
      className: "button button--small",
      text: "Edit",
      attrs: { type: "button", "aria-label": `Edit ${room.name}` },
    });
    const remove = el("button", {
      className: "button button--small button--danger",
      text: "Delete",
      attrs: { type: "button", "aria-label": `Delete ${room.name}` },
    });
    const members = Number(room.member_count ?? 0);
    const item = el("li", { className: "admin-row" }, [
      el("span", { className: "admin-row__name" }, [
        el("span", { text: room.name }),
        el("span", { className: "admin-row__sub", text: this.categoryName(room.category_id) }),
      ]),
      el("span", {
        className: "admin-row__meta",
        text: `${members} member${members === 1 ? "" : "s"}`,
      }),
      edit,
      remove,
    ]);
    item.dataset.room = String(room.id);
    edit.addEventListener("click", () => this.edit(room));
    remove.addEventListener("click", async () => {
      const sure = await this.confirm({
        title: "Delete room",
        text: `Delete the room “${room.name}” and its messages? Its members are told.`,
        ok: "Delete",
      });
      if (sure) {
        this.run(() => net.deleteRoom(room.id), `Room “${room.name}” deleted.`);
      }
    });
    return item;
  }

  /** @param {any} room null: back to "new room" */
  edit(room) {
    const form = this.roomForm;
    form.reset();
    const id = /** @type {HTMLInputElement} */ (form.elements.namedItem("id"));
    id.value = room ? String(room.id) : "";
    byId("admin-room-form-title", HTMLElement).textContent = room
      ? `Edit “${room.name}”`
      : "New public room";
    byId("admin-room-submit", HTMLButtonElement).textContent = room ? "Save room" : "Create room";
    byId("admin-room-cancel", HTMLButtonElement).hidden = !room;
    const names = this.categories.map((c) => String(c.id));
    const select = byId("admin-room-category", HTMLSelectElement);
    fillSelect(select, names, room ? String(room.category_id) : names[0]);
    for (const option of select.options) {
      option.textContent = this.categoryName(Number(option.value));
    }
    if (room) {
      byId("admin-room-name", HTMLInputElement).value = room.name ?? "";
      byId("admin-room-topic", HTMLInputElement).value = room.topic ?? "";
      byId("admin-room-capacity", HTMLInputElement).value = room.capacity_own ? String(room.capacity_own) : "";
      byId("admin-room-name", HTMLInputElement).focus();
    }
  }

  /**
   * @param {() => Promise<unknown>} change
   * @param {string} done
   */
  async run(change, done) {
    try {
      await change();
      this.tell(done);
      await this.load();
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
      this.status.focus();
    }
  }
}
