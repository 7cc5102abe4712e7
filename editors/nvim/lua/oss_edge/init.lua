-- oss-edge for Neovim: offline completion and explanation from gpt-oss through `oss-edge lsp`.
local M = {}

--- Optional: change the defaults (see :help oss-edge-setup). `vim.lsp.enable('oss_edge')` works without it.
function M.setup(opts)
  return require('oss_edge.config').setup(opts)
end

--- The server's effective warmOnRestMs per client (from `ossEdge/status`): the plugin repeats no defaults.
local warm_delay = {}

--- Ask the server for the settings the plugin acts on itself; refreshed on attach.
local function fetch_settings(client)
  client:request('ossEdge/status', nil, function(err, status)
    if not err and type(status) == 'table' then
      warm_delay[client.id] = tonumber(status.warmOnRestMs) or 0
    end
  end)
end

--- Cache warming: once the cursor has rested `warmOnRestMs` (no typing in between), ask the server to read the
--- code around it into the model's cache, so that the first suggestion there comes from the cache.
local function warm_on_rest(client, bufnr)
  local timer = assert(vim.uv.new_timer())
  local group = vim.api.nvim_create_augroup('oss_edge_warm_' .. bufnr, { clear = true })
  local last_tick = vim.b[bufnr].changedtick
  vim.api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      local tick = vim.b[bufnr].changedtick
      local typed = tick ~= last_tick
      last_tick = tick
      timer:stop()
      local delay = warm_delay[client.id] or 0
      if typed or delay <= 0 then
        return -- the cursor moved because of typing: that keystroke's own request fills the cache
      end
      timer:start(delay, 0, vim.schedule_wrap(function()
        if client:is_stopped() or vim.api.nvim_get_current_buf() ~= bufnr then
          return
        end
        if vim.b[bufnr].changedtick ~= tick or vim.fn.mode():find('^[vVsS\22]') then
          return -- typed since, or a selection
        end
        client:notify('ossEdge/warm', vim.lsp.util.make_position_params(0, client.offset_encoding))
      end))
    end,
  })
  vim.api.nvim_create_autocmd({ 'BufUnload', 'LspDetach' }, {
    group = group,
    buffer = bufnr,
    once = true,
    callback = function()
      timer:stop()
      if not timer:is_closing() then
        timer:close()
      end
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })
end

--- Called when the server attaches to a buffer: turn on the completion UI this Neovim has.
function M.attach(client, bufnr)
  local options = require('oss_edge.config').options
  fetch_settings(client)
  warm_on_rest(client, bufnr)
  if options.inline and vim.lsp.inline_completion then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  elseif vim.lsp.completion then
    -- Neovim 0.11 has no inline completion UI: offer the suggestion as a completion item, on request
    -- (<C-x><C-o> or <C-Space>), because every request costs a model generation.
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = false })
    vim.bo[bufnr].omnifunc = 'v:lua.vim.lsp.omnifunc'
  end
end

--- The oss-edge client attached to a buffer, if any.
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'oss_edge' })[1]
end

function M.explain(opts)
  require('oss_edge.explain').explain(opts or {})
end

function M.status()
  local client = M.client()
  if not client then
    vim.notify('oss-edge is not attached to this buffer', vim.log.levels.WARN)
    return
  end
  client:request('ossEdge/status', nil, function(err, status)
    if err then
      vim.notify('oss-edge: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    local parts = { 'oss-edge: ' .. status.state }
    if status.lastLatencyMs ~= vim.NIL and status.lastLatencyMs then
      table.insert(parts, string.format('%d ms', status.lastLatencyMs))
    end
    if status.tokensPerSecond ~= vim.NIL and status.tokensPerSecond then
      table.insert(parts, string.format('%.1f tok/s', status.tokensPerSecond))
    end
    if status.error ~= vim.NIL and status.error then
      table.insert(parts, status.error)
    end
    vim.notify(table.concat(parts, ' · '))
  end)
end

function M.restart()
  for _, client in ipairs(vim.lsp.get_clients({ name = 'oss_edge' })) do
    client:stop()
  end
  vim.defer_fn(function()
    vim.lsp.enable('oss_edge', false)
    vim.lsp.enable('oss_edge')
    vim.cmd.edit() -- re-attach the current buffer
  end, 500)
end

return M
