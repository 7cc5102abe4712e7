-- :OssEdge explain: the explanation of a selection in a floating window that fills as the model writes.
-- `q` (or <Esc>) closes the window and cancels the generation.
local M = {}

local current -- { buf, win, client, request_id, id, answer, reasoning, done }

local function lines_of(state)
  local text
  if state.answer ~= '' then
    text = state.answer
    if state.cut then
      text = text
        .. '\n\n---\n_The reasoning ran long and was cut short so that the model would answer; '
        .. 'the explainMaxTokens setting gives it more room._'
    end
  elseif state.done then
    text = '_The model gave no answer within its token budget._'
  else
    local words = #vim.split(vim.trim(state.reasoning), '%s+', { trimempty = true })
    text = words > 0 and string.format('_Thinking… (%d words of reasoning so far)_', words) or '_Thinking…_'
  end
  return vim.split(text, '\n', { plain = true })
end

local function render(state)
  if not vim.api.nvim_buf_is_valid(state.buf) then
    return
  end
  vim.bo[state.buf].modifiable = true
  vim.api.nvim_buf_set_lines(state.buf, 0, -1, false, lines_of(state))
  vim.bo[state.buf].modifiable = false
end

local function close(state)
  if not state.done and state.client and state.request_id then
    state.client:cancel_request(state.request_id)
  end
  state.done = true
  if vim.api.nvim_win_is_valid(state.win) then
    vim.api.nvim_win_close(state.win, true)
  end
  if current == state then
    current = nil
  end
end

--- A streamed note from the server (`ossEdge/explanation`).
function M.on_note(note)
  local state = current
  if not state or state.done then
    return
  end
  state.id = state.id or note.id
  if note.id ~= state.id then
    return
  end
  if note.done then
    state.done = true
    if note.markdown and note.markdown ~= vim.NIL then
      state.answer = note.markdown
    end
    state.cut = note.analysisCut == true
  elseif note.channel == 'final' then
    state.answer = state.answer .. note.delta
  else
    state.reasoning = state.reasoning .. note.delta
  end
  render(state)
end

local function selection_range(opts, bufnr)
  local first, last = opts.line1, opts.line2
  if not first then
    first, last = vim.fn.line("'<"), vim.fn.line("'>")
  end
  local last_line = vim.api.nvim_buf_get_lines(bufnr, last - 1, last, false)[1] or ''
  return { start = { line = first - 1, character = 0 }, ['end'] = { line = last - 1, character = #last_line } },
    first,
    last
end

--- Explain lines opts.line1..opts.line2 (a command range) or the last visual selection.
function M.explain(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = require('oss_edge').client(bufnr)
  if not client then
    vim.notify('oss-edge is not attached to this buffer (see :checkhealth oss_edge)', vim.log.levels.ERROR)
    return
  end
  if current then
    close(current)
  end
  local range, first, last = selection_range(opts, bufnr)
  -- Ranges are sent in UTF-8 columns only when the client negotiated it; whole lines need no conversion.
  range['end'].character = vim.str_utfindex(
    vim.api.nvim_buf_get_lines(bufnr, last - 1, last, false)[1] or '',
    client.offset_encoding
  )
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].filetype = 'markdown'
  local width = math.min(100, math.floor(vim.o.columns * 0.6))
  local height = math.min(30, math.floor(vim.o.lines * 0.6))
  local win = vim.api.nvim_open_win(buf, true, {
    relative = 'editor',
    width = width,
    height = height,
    row = math.floor((vim.o.lines - height) / 2),
    col = math.floor((vim.o.columns - width) / 2),
    style = 'minimal',
    border = require('oss_edge.config').options.border,
    title = string.format(' oss-edge: lines %d-%d ', first, last),
  })
  vim.wo[win].wrap = true
  local state = { buf = buf, win = win, client = client, answer = '', reasoning = '', done = false }
  current = state
  for _, key in ipairs({ 'q', '<Esc>' }) do
    vim.keymap.set('n', key, function()
      close(state)
    end, { buffer = buf, nowait = true, desc = 'close the explanation and stop it' })
  end
  vim.api.nvim_create_autocmd('WinClosed', {
    pattern = tostring(win),
    once = true,
    callback = function()
      close(state)
    end,
  })
  render(state)
  local arguments = { { uri = vim.uri_from_bufnr(bufnr), range = range, reasoning = opts.reasoning } }
  local ok, request_id = client:request('workspace/executeCommand', {
    command = 'ossEdge.explainSelection',
    arguments = arguments,
  }, function(err, markdown)
    if state.done and not err then
      return
    end
    state.done = true
    if err then
      state.answer = '**Error:** ' .. err.message
    elseif type(markdown) == 'string' and markdown ~= '' then
      state.answer = markdown
    end
    render(state)
  end, bufnr)
  if ok then
    state.request_id = request_id
  end
end

--- The window of the explanation in progress (for tests and statuslines).
function M.current()
  return current
end

return M
